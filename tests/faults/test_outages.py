"""Outages an SRE will meet: Redis restarting mid-stream, Redis away while the worker is told
to stop, a worker dying while another stands by."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.engine.policy import load_policy

from ..conftest import event
from ..stores import make_store
from .conftest import RedisServer, processed, read_windows, readyz, scrape, total, wait_for

POLICY = """
name: outages
version: "1"
windows: [10s, 10m]
burst: {short: 10s, baseline: 10m, floor_rps: 0.5}
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[10m] > 1000"]
    action: throttle
    limit_rps: 1
    for: 5m
"""
KEYS = [f"k{i}" for i in range(20)]


def policy_settings(settings: Settings, tmp_path: Path, **changes: object) -> Settings:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    return settings.with_(policy_file=str(policy_file), **changes)


async def send_steadily(
    producer: AIOKafkaProducer, topic: str, rate: float, seconds: float, on_the_way=None
) -> int:
    """Send `rate` events a second for `seconds`, calling on_the_way(elapsed) between sends."""
    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        for _ in range(max(0, due)):
            key = KEYS[sent % len(KEYS)]
            await producer.send(
                topic, key=key.encode(), value=orjson.dumps(event(key, time.time()))
            )
            sent += 1
        if on_the_way is not None:
            await on_the_way(elapsed)
        await asyncio.sleep(0.02)
    await producer.flush()
    return sent


async def counted_in_redis(settings: Settings) -> float:
    store = make_store(settings, load_policy(settings.policy_file))
    try:
        found = [await read_windows(store, Subject("api_key", k)) for k in KEYS]
        return sum(stats.sums["10m"]["req"] for stats in found)
    finally:
        await store.close()


async def test_a_redis_restart_mid_stream_loses_at_most_a_second_of_counting(
    kafka_settings: Settings,
    worker_factory,
    producer: AIOKafkaProducer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    settings = policy_settings(kafka_settings, tmp_path, redis_url=redis_server.url)
    worker = worker_factory(settings)
    rate = 400.0
    restarted = False

    async def restart_redis(elapsed: float) -> None:
        nonlocal restarted
        if elapsed > 3.0 and not restarted:
            restarted = True
            redis_server.kill()  # no shutdown save: only what the append-only file holds
            await asyncio.sleep(0.5)
            redis_server.start()

    sent = await send_steadily(producer, settings.events_topic, rate, 6.0, restart_redis)
    wait_for(lambda: processed(worker) >= sent, 60, "stream drained after the restart", worker)
    counted = await counted_in_redis(settings)
    lost = sent - counted
    print(f"sent {sent}, counted {counted:.0f} after a Redis SIGKILL and restart")
    assert 0 <= lost <= rate * 1.0


async def test_sigterm_stops_a_worker_within_ten_seconds_while_redis_is_away(
    kafka_settings: Settings,
    worker_factory,
    producer: AIOKafkaProducer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    settings = policy_settings(
        kafka_settings, tmp_path, redis_url=redis_server.url, stall_after_s=2.0
    )
    worker = worker_factory(settings)
    redis_server.kill()
    await send_steadily(producer, settings.events_topic, 100, 1.0)

    # Waiting for Redis, the partitions have lag and do not move: reported stalled.
    def stalled() -> bool:
        status, body = readyz(worker)
        samples = scrape(worker)
        return (
            status == 503
            and bool(body["stalled"])
            and total(samples, "enforcer_partition_stalled") >= 1
        )

    wait_for(stalled, 20, "a stalled partition reported", worker)
    started = time.monotonic()
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.wait(timeout=15)
    took = time.monotonic() - started
    print(f"stopped in {took:.1f}s with Redis away")
    assert took <= 10.0


async def test_sigterm_stops_a_busy_worker_within_ten_seconds(
    kafka_settings: Settings, worker_factory, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    settings = policy_settings(kafka_settings, tmp_path)
    worker = worker_factory(settings)
    await send_steadily(producer, settings.events_topic, 2000, 2.0)
    started = time.monotonic()
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.wait(timeout=15)
    assert time.monotonic() - started <= 10.0


async def test_a_dead_workers_partitions_are_taken_over_within_ten_seconds(
    kafka_settings: Settings, worker_factory, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    settings = policy_settings(kafka_settings, tmp_path)
    doomed = worker_factory(settings)
    standby = worker_factory(settings)
    # Both hold partitions once the group has settled.
    wait_for(lambda: readyz(doomed)[1]["kafka"] and readyz(standby)[1]["kafka"], 30, "2 members")
    before = processed(standby)
    assert doomed.proc is not None
    doomed.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    sent = await send_steadily(producer, settings.events_topic, 200, 1.0)  # every partition
    took = wait_for(lambda: processed(standby) >= before + sent, 30, "taken over", standby)
    took = time.monotonic() - killed_at
    print(f"partitions of a SIGKILLed worker taken over in {took:.1f}s")
    assert took <= 10.0
