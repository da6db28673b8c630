"""`enforcer demo` (behind `make demo`): the whole loop on the local stack, in about a minute.

Starts a worker, replays a couple of minutes of simulated gateway traffic (benign users and one
obvious attacker, stamped just before now so it is live traffic to the worker), prints each
decision as it arrives on the decisions topic, then a summary scored against the simulator's
labels. Exits non-zero if the attacker was missed or a benign user was touched.

Every run counts in a Redis namespace of its own, removed at the end: the simulator's keys
are the same each run, and in a shared namespace the previous run's decision state (the
attacker still blocked, its events already counted) would leave nothing new to publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from enforcer.core.connections import kafka_options, redis_client
from enforcer.core.decisions import Decision
from enforcer.core.settings import Settings
from enforcer.tools.simulate import SimulationConfig, generate

DEMO_POPULATIONS = ("casual", "power_user", "enterprise_batch", "eval_harness", "bulk_scraper")


def _start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
    env.update(settings.to_env())
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "enforcer", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


async def _wait_ready(
    settings: Settings, proc: subprocess.Popen[bytes], timeout_s: float = 90.0
) -> None:
    url = f"http://{settings.web_host}:{settings.web_port}/readyz"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the worker exited during start-up; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if orjson.loads(resp.read()).get("ready"):
                    return
        except OSError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"the worker was not ready within {timeout_s:.0f}s")


def _describe(d: Decision, t0: float) -> str:
    reasons = ", ".join(
        f"{r.signal}{'[' + r.window + ']' if r.window else ''}={r.value:g} "
        f"(threshold {r.threshold:g})"
        for r in d.reasons
    )
    subject = d.subject.value if len(d.subject.value) <= 24 else d.subject.value[:21] + "..."
    limit = f" {d.limit_rps:g}/s" if d.limit_rps else ""
    return (
        f"  +{time.time() - t0:5.1f}s  {d.action.upper():8}{limit:7} {d.subject.kind}:{subject:24} "
        f"rule={d.rule:22} {reasons}"
    )


async def run_demo(settings: Settings, seconds: float = 120.0, seed: int = 11) -> int:
    run = uuid.uuid4().hex[:8]
    settings = settings.with_(redis_prefix=f"{settings.redis_prefix}-demo-{run}")
    try:
        return await _run_demo(settings, seconds, seed)
    finally:
        with contextlib.suppress(Exception):
            await _drop_namespace(settings)


async def _drop_namespace(settings: Settings) -> None:
    client = redis_client(settings)
    try:
        async for key in client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000):
            await client.unlink(key)
    finally:
        await client.aclose()


async def _run_demo(settings: Settings, seconds: float, seed: int) -> int:
    log_path = Path(".stack") / "demo-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    now = time.time()
    config = SimulationConfig(
        duration_s=seconds,
        start_ts=now - seconds - 5,
        seed=seed,
        scale=0.5,
        populations=DEMO_POPULATIONS,
    )
    events, labels = generate(config)
    attackers = {k for k, v in labels.items() if v["attack"]}
    print(
        f"simulated {len(events)} events from {len(labels)} keys "
        f"({len(attackers)} attacker) over {seconds:.0f}s"
    )

    print(f"starting the worker (log: {log_path}) ...")
    proc = _start_worker(settings, log_path)
    consumer = AIOKafkaConsumer(
        settings.decisions_topic,
        **kafka_options(settings),
        auto_offset_reset="latest",
    )
    producer = AIOKafkaProducer(**kafka_options(settings), linger_ms=20)
    try:
        await _wait_ready(settings, proc)
        await consumer.start()
        await consumer.seek_to_end()
        await producer.start()
        t0 = time.time()
        print(f"replaying onto {settings.events_topic}; decisions from {settings.decisions_topic}:")
        for doc in events:
            await producer.send(
                settings.events_topic, key=doc["api_key"].encode(), value=orjson.dumps(doc)
            )
        await producer.flush()
        sent_s = time.time() - t0

        decisions: list[Decision] = []
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 4.0:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    d = Decision.from_json(record.value)
                    if d.issued_at < now:
                        continue  # left over from an earlier run
                    decisions.append(d)
                    print(_describe(d, t0))
                    quiet_since = time.monotonic()
    finally:
        await producer.stop()
        await consumer.stop()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    enforced = [d for d in decisions if d.mode == "enforce" and d.action != "allow"]
    keys_hit = {d.subject.value for d in enforced if d.subject.kind == "api_key"}
    account_hit = {d.subject.value for d in enforced if d.subject.kind == "account"}
    touched = {k for k, v in labels.items() if k in keys_hit or v.get("account_id") in account_hit}
    caught = attackers & touched
    benign_touched = touched - attackers
    print()
    print("summary")
    print(f"  events sent         {len(events)} in {sent_s:.1f}s")
    print(
        f"  decisions           {len(decisions)}: "
        + ", ".join(f"{a}={n}" for a, n in sorted(Counter(d.action for d in decisions).items()))
    )
    print(f"  attacker keys hit   {len(caught)} of {len(attackers)}")
    benign_by_population = Counter(labels[k]["population"] for k in benign_touched)
    print(
        f"  benign keys hit     {len(benign_touched)} of {len(labels) - len(attackers)}"
        + (f" {dict(benign_by_population)}" if benign_touched else "")
    )
    if not caught:
        print("demo FAILED: the attacker was not acted on")
        return 1
    if benign_touched:
        print("demo FAILED: benign users were acted on")
        return 1
    print("demo ok: the attacker was acted on and no benign user was")
    return 0
