"""The worker as deployed: `enforcer worker` against the real Kafka broker and Redis."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import jsonschema
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from enforcer.core.counts import SubjectBatch, Window
from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.engine.features.request import COUNTERS
from enforcer.store.windows import WindowStore

from .conftest import event, read_topic

POLICY = """
name: e2e
version: "1"
windows: [10s, 1m, 10m]
burst: {short: 10s, baseline: 10m, floor_rps: 0.5}
rules:
  - name: key-burst
    subject: api_key
    when: ["rps[10s] > 4", "burst > 4"]
    action: throttle
    limit_rps: 1
    for: 5m
"""
DECISION_SCHEMA = json.loads(
    (Path(__file__).parent.parent / "topics/schemas/decision.v1.json").read_text()
)


@pytest.fixture
def worker_settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return kafka_settings.with_(policy_file=str(policy), batch_within_s=0.05)


async def send(producer: AIOKafkaProducer, topic: str, docs: list[dict | bytes]) -> None:
    for doc in docs:
        if isinstance(doc, bytes):
            await producer.send(topic, key=b"raw", value=doc)
        else:
            await producer.send(topic, key=doc["api_key"].encode(), value=orjson.dumps(doc))
    await producer.flush()


def decisions_for(messages: list, key: str) -> list[dict]:
    return [orjson.loads(m.value) for m in messages if m.key == key.encode()]


async def test_events_on_the_gateway_topic_yield_a_decision_on_the_decisions_topic(
    worker_settings: Settings, worker_factory, producer: AIOKafkaProducer
) -> None:
    worker_factory(worker_settings)
    now = time.time()
    await send(
        producer,
        worker_settings.events_topic,
        [event("k-loud", now - 6 + i * 0.1) for i in range(60)],
    )
    sent_at = time.time()
    messages = await read_topic(
        worker_settings,
        worker_settings.decisions_topic,
        lambda ms: bool(decisions_for(ms, "api_key:k-loud")),
    )
    [decision] = decisions_for(messages, "api_key:k-loud")
    jsonschema.validate(decision, DECISION_SCHEMA)
    assert (decision["action"], decision["rule"], decision["mode"]) == (
        "throttle",
        "key-burst",
        "enforce",
    )
    assert decision["subject"] == {"kind": "api_key", "value": "k-loud"}
    assert decision["issued_at"] - sent_at < 5.0


async def test_redelivered_events_do_not_count_twice(
    worker_settings: Settings, worker_factory, producer: AIOKafkaProducer
) -> None:
    worker_factory(worker_settings)
    now = time.time()
    docs = [event("k-redeliver", now - 30 + i) for i in range(10)]
    await send(producer, worker_settings.events_topic, docs)
    await send(producer, worker_settings.events_topic, docs)  # the same event_ids again
    await send(producer, worker_settings.events_topic, [event("k-redeliver", now - 15)])
    store = WindowStore.from_url(
        worker_settings.redis_url,
        prefix=worker_settings.redis_prefix,
        windows=(Window.of("10m", 600),),
        counters=COUNTERS,  # the worker's layout: a store with other counters reads nothing
        lateness_s=worker_settings.allowed_lateness_s,
    )
    try:
        deadline = time.monotonic() + 20
        count = 0
        while time.monotonic() < deadline:
            [stats], _ = await store.update([SubjectBatch(Subject("api_key", "k-redeliver"), [])])
            count = stats.sums["10m"]["req"]
            if count >= 11:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # anything still in flight would show up now
        [stats], _ = await store.update([SubjectBatch(Subject("api_key", "k-redeliver"), [])])
        assert stats.sums["10m"]["req"] == 11
    finally:
        await store.close()


async def test_malformed_event_is_dead_lettered_with_its_reason_and_the_next_good_event_is_processed(
    worker_settings: Settings, worker_factory, producer: AIOKafkaProducer
) -> None:
    worker_factory(worker_settings)
    now = time.time()
    bad = b'{"event_id": "bad-1", "ts": "soon", "api_key": "k-after-bad"'
    await send(producer, worker_settings.events_topic, [bad, b"\x00\xffnot json"])
    await send(
        producer,
        worker_settings.events_topic,
        [event("k-after-bad", now - 6 + i * 0.1) for i in range(60)],
    )
    dead = await read_topic(
        worker_settings, worker_settings.deadletter_topic, lambda ms: len(ms) >= 2
    )
    # By default a dead letter names the record (digest, size, where it is), never quotes it.
    summaries = [orjson.loads(m.value) for m in dead]
    assert sorted(s["sha256"] for s in summaries) == sorted(
        hashlib.sha256(raw).hexdigest() for raw in (bad, b"\x00\xffnot json")
    )
    assert all(b"k-after-bad" not in m.value and m.key is None for m in dead)
    for summary, message in zip(summaries, dead, strict=True):
        assert summary["source"]["topic"] == worker_settings.events_topic
        assert summary["reason"] == "malformed_json"
        headers = dict(message.headers)
        assert headers["enforcer.record"] == b"omitted"
        assert int(headers["enforcer.size"]) == summary["size"]
    headers = [dict(m.headers) for m in dead]
    assert all(h["enforcer.reason"] == b"malformed_json" for h in headers)
    assert all(h["enforcer.detail"] for h in headers)
    decisions = await read_topic(
        worker_settings,
        worker_settings.decisions_topic,
        lambda ms: bool(decisions_for(ms, "api_key:k-after-bad")),
    )
    assert decisions_for(decisions, "api_key:k-after-bad")[0]["action"] == "throttle"


async def test_windows_follow_event_time_not_arrival_time(
    worker_settings: Settings, worker_factory, producer: AIOKafkaProducer
) -> None:
    worker_factory(worker_settings)
    now = time.time()
    # Both keys' events arrive together; only k-dense's are close together in event time.
    spread = [event("k-spread", now - 1800 + i * 30) for i in range(60)]
    dense = [event("k-dense", now - 6 + i * 0.1) for i in range(60)]
    await send(producer, worker_settings.events_topic, spread + dense)
    messages = await read_topic(
        worker_settings,
        worker_settings.decisions_topic,
        lambda ms: bool(decisions_for(ms, "api_key:k-dense")),
    )
    assert decisions_for(messages, "api_key:k-dense")
    assert decisions_for(messages, "api_key:k-spread") == []
