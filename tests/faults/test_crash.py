"""A worker killed (SIGKILL) at any point of a batch loses no decision and counts no event
twice: the batch is redelivered, its events are recognised, and a decision that was not yet
delivered is published again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.engine.policy import load_policy
from enforcer.store import keys

from ..conftest import event, read_topic
from ..stores import make_store
from .conftest import read_windows, wait_for

POLICY = """
name: crash
version: "1"
windows: [10s, 1m, 10m]
burst: {short: 10s, baseline: 10m, floor_rps: 0.5}
rules:
  - name: key-burst
    subject: api_key
    when: ["rps[10s] > 4"]
    action: throttle
    limit_rps: 1
    for: 5m
"""


@pytest.mark.parametrize("point", ["before_publish", "before_confirm", "before_commit"])
async def test_a_worker_killed_mid_batch_loses_no_decision_and_counts_each_event_once(
    kafka_settings: Settings,
    worker_factory,
    producer: AIOKafkaProducer,
    redis_client: aioredis.Redis,
    tmp_path: Path,
    point: str,
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    settings = kafka_settings.with_(policy_file=str(policy_file))
    doomed = worker_factory(settings.with_(crash_at=point))
    now = time.time()
    for doc in [event("k-loud", now - 6 + i * 0.1) for i in range(60)]:
        await producer.send(settings.events_topic, key=b"k-loud", value=orjson.dumps(doc))
    await producer.flush()
    wait_for(lambda: doomed.proc.poll() is not None, 20, f"worker killed at {point}")
    assert doomed.proc.returncode == -9

    worker_factory(settings)  # the replacement, same group and Redis namespace
    subject = Subject("api_key", "k-loud")
    messages = await read_topic(
        settings,
        settings.decisions_topic,
        lambda ms: any(m.key == subject.key.encode() for m in ms),
        timeout_s=30,
    )
    published = [orjson.loads(m.value) for m in messages if m.key == subject.key.encode()]
    assert [d["action"] for d in published][:1] == ["throttle"]
    # Re-sent only when the first copy may not have reached Kafka; never more than twice.
    assert len(published) <= 2

    state = keys.state_key(settings.redis_prefix, subject, "enforce")
    deadline = time.monotonic() + 10.0
    while await redis_client.hget(state, "pending") != b"0" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # the replacement confirms once Kafka has acknowledged
    assert await redis_client.hget(state, "pending") == b"0"

    store = make_store(settings, load_policy(policy_file))
    try:
        windows = await read_windows(store, subject)
    finally:
        await store.close()
    assert windows.sums["10s"]["req"] == 60  # the only window the policy keeps for keys
