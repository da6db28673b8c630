"""Where a live batch's output goes: decisions and dead letters to Kafka, delivery awaited.

Decisions must arrive: deliver() returns only once the broker has acknowledged every one (the
caller then confirms them in decision state and commits the batch's offsets), and raises if
one could not be delivered, so the caller retries. Dead letters must never hold the stream up:
each is bounded to what the producer can send, and one that still cannot be written is logged,
counted and dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from enforcer.core.connections import kafka_options
from enforcer.core.settings import Settings
from enforcer.core.signing import DecisionSigner
from enforcer.engine.pipeline import BatchResult, DeadLetter
from enforcer.worker import metrics

log = logging.getLogger("enforcer.worker")

# A dead letter's key is the record's own when it is short (the gateway keys by api_key);
# a longer one is replaced by its digest, as the value is cut to an excerpt.
MAX_DEADLETTER_KEY_BYTES = 256
MAX_DETAIL_BYTES = 512
# Room for headers and record framing beside the largest excerpt, in a produce request.
_REQUEST_OVERHEAD_BYTES = 16_384


class DeliveryError(RuntimeError):
    """A decision was not acknowledged by the broker; the batch must not be committed."""


def deadletter_record(
    dead: DeadLetter, max_value_bytes: int, include_record: bool = False
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The key, value and headers a dead letter is written with.

    By default a dead letter says what was rejected and where to find it, never what it said:
    its value is a small JSON summary (reason, detail, source topic/partition/offset, size,
    SHA-256) and it has no key, because rejected events carry prompts and API keys and the
    dead-letter topic is read by more people, for longer, than the events topic. The source
    coordinates find the record itself while the events topic still holds it.

    With `include_record` (ENFORCER_DEADLETTER_INCLUDE_RECORD) the value is the record's bytes
    when they fit in `max_value_bytes` (so any rejected event but an oversize one is kept whole
    for replay) and their first bytes otherwise, and the key is the record's own when short."""
    record = dead.record
    value = record.value
    key = record.key
    size = len(value)
    digest = hashlib.sha256(value).hexdigest()
    detail = _bounded(dead.detail)
    rejected_at = time.time()
    headers = [
        ("enforcer.reason", dead.reason.encode()),
        ("enforcer.detail", detail),
        ("enforcer.source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ("enforcer.rejected_at", f"{rejected_at:.3f}".encode()),
        ("enforcer.size", str(size).encode()),
        ("enforcer.sha256", digest.encode()),
    ]
    if key is not None and (not include_record or len(key) > MAX_DEADLETTER_KEY_BYTES):
        headers.append(("enforcer.key_sha256", hashlib.sha256(key).hexdigest().encode()))
        key = None
    if not include_record:
        headers.append(("enforcer.record", b"omitted"))
        summary = {
            "reason": dead.reason,
            "detail": detail.decode("utf-8", "replace"),
            "source": {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
            "size": size,
            "sha256": digest,
            "rejected_at": round(rejected_at, 3),
        }
        return None, orjson.dumps(summary), headers
    if size > max_value_bytes:
        value = value[:max_value_bytes]
        headers.append(("enforcer.truncated", b"1"))
    return key, value, headers


def _bounded(text: str) -> bytes:
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_DETAIL_BYTES:
        return data
    return data[: MAX_DETAIL_BYTES - 3].decode("utf-8", "ignore").encode() + b"..."


class KafkaSink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_value_bytes = settings.max_event_bytes
        self.signer = DecisionSigner.from_settings(settings)
        self.include_record = settings.deadletter_include_record
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the sink is not started")
        return self._producer

    async def start(self) -> None:
        # aiokafka clients belong to the running loop, so they are made here.
        settings = self.settings
        self._producer = AIOKafkaProducer(
            **kafka_options(settings),
            client_id=f"{settings.app_id}-sink",
            acks="all",
            enable_idempotence=True,
            # A batch's decisions are all handed to the producer before its sender runs, so
            # they travel together anyway; lingering would only hold them back.
            linger_ms=0,
            max_request_size=max(1_048_576, settings.max_event_bytes + _REQUEST_OVERHEAD_BYTES),
        )
        await self._producer.start()

    async def stop(self, timeout_s: float = 3.0) -> None:
        if self._producer is None:
            return
        try:
            await asyncio.wait_for(self.producer.stop(), timeout_s)
        except (TimeoutError, KafkaError) as exc:
            log.warning("producer did not stop cleanly: %r", exc)

    async def deliver(self, result: BatchResult) -> None:
        """Write the batch's dead letters (best effort) and decisions (acknowledged)."""
        sent = [await self._send_deadletter(dead) for dead in result.dead_letters]
        await self.deliver_decisions(result)
        for dead, future in zip(result.dead_letters, sent, strict=True):
            if future is None:
                continue
            try:
                await future
            except KafkaError as exc:
                _deadletter_lost(dead, exc)

    async def deliver_decisions(self, result: BatchResult) -> None:
        """Send every decision and wait for the broker's acknowledgement of each."""
        if not result.decisions:
            return
        topic = self.settings.decisions_topic
        try:
            futures = []
            for d in result.decisions:
                record = d.record(self.signer)
                futures.append(
                    await self.producer.send(
                        topic, key=record.key, value=record.value, headers=record.headers
                    )
                )
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise DeliveryError(f"decisions not delivered: {exc!r}") from exc
        for decision in result.decisions:
            # One JSON line per decision, reasons included (enforcer.core.logs formats it).
            log.info("decision", extra={"decision": decision.to_dict()})

    async def _send_deadletter(self, dead: DeadLetter) -> asyncio.Future[Any] | None:
        key, value, headers = deadletter_record(dead, self.max_value_bytes, self.include_record)
        try:
            sent: asyncio.Future[Any] = await self.producer.send(
                self.settings.deadletter_topic, key=key, value=value, headers=headers
            )
            return sent
        except KafkaError as exc:
            _deadletter_lost(dead, exc)
            return None


def _deadletter_lost(dead: DeadLetter, exc: BaseException) -> None:
    record = dead.record
    metrics.DEADLETTER_FAILURES.inc()
    log.error(
        "dead letter not written, record skipped: %s/%s/%s (%s, %d bytes): %r",
        record.topic,
        record.partition,
        record.offset,
        dead.reason,
        len(record.value),
        exc,
    )
