"""The decisions topic read as a log: what is in force, a subject's history, and lifts.

The compacted topic is the one record of what enforcer told the gateways, so operators' tools
read it rather than Redis: a gateway acts on exactly these records. Compaction keeps at least
the latest record of every subject; the older ones a subject's history shows are those the
broker has not yet compacted away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from enforcer.core.decisions import Decision, Lift, Subject

LIFT_RULE = "lift"


class LogReadError(RuntimeError):
    """The decisions topic could not be read to its end in time."""


class Logged(NamedTuple):
    partition: int
    offset: int
    key: str
    decision: Decision | None  # None: a tombstone or a record that is not decision.v1


async def read_log(bootstrap: str, topic: str, timeout_s: float = 15.0) -> list[Logged]:
    """Every record on the topic up to the end offsets seen when the read began, in offset
    order per partition."""
    partitions = await _partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="enforcer-decisions-cli",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Logged] = []
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in tps if ends[tp] > 0}
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
        while remaining:
            if time.monotonic() > deadline:
                raise LogReadError(f"topic {topic!r} not read to its end in {timeout_s:.0f}s")
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset < ends[tp]:
                        records.append(Logged(tp.partition, m.offset, _text(m.key), _parse(m)))
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code") or not described.get("partitions"):
        raise LogReadError(f"topic {topic!r} does not exist")
    return [p["partition"] for p in described["partitions"]]


def _text(key: bytes | None) -> str:
    return "" if key is None else key.decode(errors="replace")


def _parse(message: object) -> Decision | None:
    value = getattr(message, "value", None)
    if value is None:
        return None
    try:
        return Decision.from_json(value)
    except (ValueError, KeyError, TypeError):
        return None


def latest(records: Iterable[Logged]) -> dict[str, Logged]:
    """The latest record of every key: the state a gateway reading the topic holds."""
    found: dict[str, Logged] = {}
    for record in records:
        found[record.key] = record
    return found


def in_force(decision: Decision | None, now: float) -> bool:
    """An enforce-mode action other than allow whose time has not run out."""
    return (
        decision is not None
        and decision.mode == "enforce"
        and decision.action != "allow"
        and (decision.expires_at is None or decision.expires_at > now)
    )


def history(records: Iterable[Logged], subject: Subject) -> list[Decision]:
    """The subject's decisions still on the topic, enforce and shadow, oldest first."""
    wanted = {subject.key, f"shadow/{subject.key}"}
    found = [r.decision for r in records if r.key in wanted and r.decision is not None]
    return sorted(found, key=lambda d: d.issued_at)


def lift_decision(
    subject: Subject, by: str, reason: str, now: float, grace_s: float | None
) -> Decision:
    """The allow that lifts a subject's decision. It expires with the grace, so the topic
    says how long the lift was meant to protect the subject from its old evidence."""
    return Decision(
        subject=subject,
        action="allow",
        ts=now,
        issued_at=now,
        expires_at=None if grace_s is None else now + grace_s,
        rule=LIFT_RULE,
        policy_version="operator",
        mode="enforce",
        lift=Lift(by, reason),
    )


async def publish(bootstrap: str, topic: str, decisions: Iterable[Decision]) -> int:
    """Produce decisions keyed as the worker keys them, each acknowledged by the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send(topic, d.to_json(), key=d.record_key) for d in decisions]
        await asyncio.gather(*sent)
        return len(sent)
    finally:
        await producer.stop()
