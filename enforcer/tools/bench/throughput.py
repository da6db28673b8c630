"""Events per second of each way through the same backlog: aiokafka alone, a do-nothing Faust
agent, the enforcer worker, the backtest, and a naive per-event limiter (the `limits` library).

Every Kafka figure is taken from the first event seen to the last, so joining the consumer
group is not in it; the worker's from its committed offsets, polled from outside.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer

from enforcer.core.settings import Settings
from enforcer.engine.policy import load_policy
from enforcer.tools.backtest import run_backtest
from enforcer.tools.bench.stack import (
    ROOT,
    WorkerProcess,
    committed_total,
    drop_namespace,
)


async def ceiling(settings: Settings, expected: int) -> float:
    """aiokafka getmany passthrough: what reading the topic costs before any work."""
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.app_id}-ceiling",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1_048_576,
    )
    await consumer.start()
    seen = 0
    first = 0.0
    try:
        while seen < expected:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in fetched.values():
                if seen == 0 and records:
                    first = time.perf_counter()
                seen += len(records)
        return (seen - 1) / max(time.perf_counter() - first, 1e-9)
    finally:
        await consumer.stop()


async def framework(settings: Settings, expected: int, timeout_s: float = 300.0) -> float:
    """A real Faust app whose agent does nothing, in a process of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "faust.json"
        env = dict(os.environ, ENFORCER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap)
        with (Path(tmp) / "faust.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "enforcer.tools.bench.faust_agent",
                    settings.events_topic,
                    f"{settings.app_id}-faust",
                    str(expected),
                    str(out),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + timeout_s
                while not out.exists():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        tail = (Path(tmp) / "faust.log").read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"the Faust agent did not finish:\n{tail}")
                    await asyncio.sleep(0.2)
                await asyncio.sleep(0.05)  # the file is written in one call; let it land
                result = orjson.loads(out.read_bytes())
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return float(result["events"]) / max(float(result["seconds"]), 1e-9)


class Drain(NamedTuple):
    events_per_s: float
    events: int  # events the worker counted (from its metrics)
    round_trips: int  # pipelined Redis round trips the worker made (from its metrics)
    commands: int  # Redis commands the server processed meanwhile (all clients)
    worker: WorkerProcess  # still running: its namespace is read before it stops


async def enforcer_drain(settings: Settings, expected: int, timeout_s: float = 600.0) -> Drain:
    """The real worker draining the pre-produced backlog; its speed from committed offsets
    polled every 0.2 s, from the first commit seen to the last."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.redis_url)
    worker = WorkerProcess(settings)
    try:
        before = await _commands(client)
        worker.start()
        deadline = time.monotonic() + timeout_s
        first: tuple[float, int] | None = None
        done = 0
        while done < expected:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker drained {done} of {expected} in {timeout_s:g}s")
            await asyncio.sleep(0.2)
            done = await committed_total(settings, settings.app_id, settings.events_topic)
            if first is None and done > 0:
                first = (time.perf_counter(), done)
        finished = time.perf_counter()
        after = await _commands(client)
        assert first is not None
        rate = (done - first[1]) / max(finished - first[0], 1e-9)
        samples = await worker.metrics()
    except BaseException:
        worker.stop()
        raise
    finally:
        await client.aclose()
    return Drain(
        rate,
        int(samples.get("enforcer_events_processed_total", 0)),
        int(samples.get("enforcer_redis_call_seconds_count", 0)),
        after - before,
        worker,
    )


async def _commands(client: object) -> int:
    stats = await client.info("commandstats")  # type: ignore[attr-defined]
    return sum(int(v.get("calls", 0)) for v in stats.values() if isinstance(v, dict))


async def backtest(settings: Settings, path: Path) -> float:
    report = await run_backtest(settings, load_policy(settings.policy_file), path)
    return report.events_per_s


async def naive(settings: Settings, path: Path, limit: int) -> tuple[float, int]:
    """The `limits` library's moving window, one hit for the key and one for the account of
    every event, read from the same file, against the same Redis: the per-event limiter a
    team would write first. Returns events/s and how many events it took."""
    from limits import parse
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    prefix = f"{settings.redis_prefix}-naive-{uuid.uuid4().hex[:8]}"
    storage = RedisStorage(
        f"async+{settings.redis_url}", implementation="redispy", key_prefix=prefix
    )
    limiter = MovingWindowRateLimiter(storage)
    per_key, per_account = parse("600/minute"), parse("6000/minute")
    n = 0
    try:
        with path.open("rb") as fh:
            started = time.perf_counter()
            for line in fh:
                doc = orjson.loads(line)
                await limiter.hit(per_key, "key", doc["api_key"])
                account = doc.get("account_id")
                if account:
                    await limiter.hit(per_account, "account", account)
                n += 1
                if n >= limit:
                    break
            elapsed = time.perf_counter() - started
    finally:
        await drop_namespace(settings, prefix)
    return n / max(elapsed, 1e-9), n
