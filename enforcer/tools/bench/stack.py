"""What the live-path benchmarks share: one simulated stream, topics and Redis namespaces of a
run's own (removed afterwards), producing a backlog, and `enforcer worker` as a child process.

The worker runs as an operator runs it (`python -m enforcer worker`, configured only by its
ENFORCER_ environment), so its figures include everything the deployed worker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from enforcer.core.connections import redis_client
from enforcer.core.settings import Settings
from enforcer.core.topics import apply_topics, connect_admin, load_catalogue
from enforcer.tools.simulate import SimulationConfig, generate

ROOT = Path(__file__).resolve().parents[3]
# The simulated mix runs at about 95 events/s of event time at scale 1: 40 minutes give about
# 225k events, 4 minutes about 24k.
FULL_STREAM_S = 2400.0
QUICK_STREAM_S = 240.0


def stream(quick: bool, end_ts: float | None = None, seed: int = 7) -> list[dict[str, Any]]:
    """The run's simulated stream, stamped to end at `end_ts` (now by default): a backlog that a
    worker may count (none of it from the future, the lateness judged per partition)."""
    duration = QUICK_STREAM_S if quick else FULL_STREAM_S
    end = time.time() if end_ts is None else end_ts
    events, _ = generate(SimulationConfig(duration_s=duration, start_ts=end - duration, seed=seed))
    return events


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def isolated(settings: Settings, name: str) -> AsyncIterator[Settings]:
    """Settings with topics, a consumer group and a Redis namespace of their own; all removed
    on the way out, so a benchmark leaves neither partitions nor keys behind."""
    run = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    s = settings.with_(
        events_topic=f"{run}.events",
        decisions_topic=f"{run}.decisions",
        deadletter_topic=f"{run}.deadletter",
        app_id=run,
        redis_prefix=f"{settings.redis_prefix}-{run}",
    )
    await apply_topics(s)
    try:
        yield s
    finally:
        await drop_namespace(s, s.redis_prefix)
        admin = await connect_admin(s)
        try:
            await admin.delete_topics([s.events_topic, s.decisions_topic, s.deadletter_topic])
        except Exception:  # noqa: BLE001 - a topic left behind is not worth failing the figures
            pass
        finally:
            await admin.close()


async def drop_namespace(settings: Settings, prefix: str) -> None:
    client = redis_client(settings)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=2000):
            batch.append(key)
            if len(batch) >= 2000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


async def produce(
    settings: Settings, docs: Iterable[dict[str, Any]], topic: str | None = None
) -> int:
    """Every event to the events topic, keyed by api_key as the gateway keys them, as fast as
    the broker takes them; returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    n = 0
    try:
        for doc in docs:
            await producer.send(
                topic or settings.events_topic, orjson.dumps(doc), key=doc["api_key"].encode()
            )
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


def topic_partitions(settings: Settings, role: str) -> list[TopicPartition]:
    """A catalogue topic's partitions, as `isolated` created them."""
    spec = next(t for t in load_catalogue(settings) if t.role == role)
    return [TopicPartition(spec.name, p) for p in range(spec.partitions)]


async def committed_total(settings: Settings, group: str, topic: str) -> int:
    """Offsets the group has committed on the topic, summed over its partitions."""
    admin = await connect_admin(settings)
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(max(0, meta.offset) for tp, meta in offsets.items() if tp.topic == topic)


class WorkerProcess:
    """`enforcer worker` as a child process with its output in a temporary log file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.with_(web_port=free_port(), log_level="warning")
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
            prefix="enforcer-bench-worker-", suffix=".log"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
        env.update(self.settings.to_env())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "enforcer", "worker"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def tail(self, chars: int = 2000) -> str:
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"the bench's worker exited:\n{self.tail()}")

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.settings.web_port}/readyz"
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError, ValueError):
                body = await asyncio.to_thread(_get, url)
                if orjson.loads(body).get("ready"):
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the bench's worker was not ready in {timeout_s:g}s:\n{self.tail()}")

    async def metrics(self) -> dict[str, float]:
        """The worker's exported samples, summed over their labels, by sample name."""
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{self.settings.web_port}/metrics")
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text.decode()):
            for sample in family.samples:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as resp:
        body: bytes = resp.read()
        return body
