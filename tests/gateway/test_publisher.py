"""EventPublisher: events reach the topic keyed by api_key; a full buffer drops, never waits."""

from __future__ import annotations

import time

from enforcer.core.events import parse_event
from enforcer.core.settings import Settings
from enforcer.gateway.publisher import EventPublisher
from tests.conftest import event, read_topic


async def test_published_events_arrive_keyed_by_api_key_and_valid(kafka_settings: Settings) -> None:
    publisher = EventPublisher.from_settings(kafka_settings, linger_ms=5)
    await publisher.start()
    try:
        now = time.time()
        for i in range(30):
            assert publisher.publish(event(f"k{i % 3}", now + i / 100, prompt="think step by step"))
        # event_id and ts are filled in when the gateway leaves them out
        assert publisher.publish({"api_key": "k-minimal", "ip": "2001:db8::7"})
        assert await publisher.flush(10)
    finally:
        await publisher.stop()
    assert publisher.stats()._asdict() == {
        "buffered": 0,
        "published": 31,
        "dropped": 0,
        "invalid": 0,
        "failed": 0,
    }
    messages = await read_topic(kafka_settings, kafka_settings.events_topic, lambda m: len(m) >= 31)
    assert len(messages) == 31
    for message in messages:
        parsed = parse_event(message.value)  # what the worker will do with it
        assert message.key == parsed.api_key.encode()
    # Keyed by api_key: one key's events share a partition, so they stay in order.
    partitions = {m.key: {n.partition for n in messages if n.key == m.key} for m in messages}
    assert all(len(p) == 1 for p in partitions.values())


async def test_full_buffer_drops_and_counts_instead_of_waiting(kafka_settings: Settings) -> None:
    publisher = EventPublisher.from_settings(kafka_settings, buffer_max=100)
    # Not started yet: nothing drains the buffer, as when Kafka is slow or away.
    started = time.perf_counter()
    accepted = [publisher.publish(event("k-flood", time.time())) for _ in range(1000)]
    elapsed = time.perf_counter() - started
    assert accepted.count(True) == 100 and accepted.count(False) == 900
    assert publisher.stats().dropped == 900 and publisher.stats().buffered == 100
    assert elapsed < 0.5, f"publish() must not wait: 1000 calls took {elapsed:.3f} s"
    # Once connected, what was buffered is sent and the buffer takes events again.
    await publisher.start()
    try:
        assert await publisher.flush(10)
        assert publisher.publish(event("k-flood", time.time()))
        assert await publisher.flush(10)
    finally:
        await publisher.stop()
    assert (publisher.stats().published, publisher.stats().dropped) == (101, 900)


def test_invalid_events_are_refused_and_counted(settings: Settings) -> None:
    publisher = EventPublisher.from_settings(settings)
    assert not publisher.publish({"api_key": "k"})  # no ip
    assert not publisher.publish({"api_key": "k", "ip": "not-an-address"})
    assert not publisher.publish({"api_key": "k" * 300, "ip": "192.0.2.1"})
    assert not publisher.publish({"api_key": "k", "ip": "192.0.2.1", "prompt": "x" * 70_000})
    assert publisher.stats().invalid == 4 and publisher.stats().buffered == 0
