"""EventPublisher: what a gateway embeds to send gateway_event.v1 records to enforcer.

The request path only appends to a bounded in-memory buffer; a background task hands the
buffer to Kafka in batches. When Kafka is slow or away the buffer fills and new events are
dropped and counted, never waited for: enforcement degrades, serving does not.

A gateway should fill `thinking_budget` with the reasoning tokens a request asked for through
the API (extended thinking, reasoning effort): such a request needs no textual cue to extract
reasoning, so without the field detection cannot see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from enforcer.core.connections import kafka_options
from enforcer.core.events import InvalidEvent, event_from_dict
from enforcer.core.keyhash import hasher_from_settings
from enforcer.core.settings import Settings

log = logging.getLogger("enforcer.gateway.publisher")


class PublisherStats(NamedTuple):
    buffered: int  # waiting for the next batch
    published: int  # acknowledged by Kafka
    dropped: int  # refused because the buffer was full, or still buffered at stop()
    invalid: int  # refused because they are not valid gateway_event.v1
    failed: int  # handed to Kafka and not acknowledged


class EventPublisher:
    """Publishes gateway_event.v1 records keyed by api_key, batched, off the request path.

    `publish()` is a plain (non-async) call that returns at once: True when the event was
    buffered, False when it was refused (buffer full, or not a valid event; see `stats()`).
    It fills in `event_id` and `ts` when the gateway leaves them out, and validates the rest
    with the worker's own parser, so a bad event is refused here rather than dead-lettered
    later. Call it from the thread that runs the event loop.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        buffer_max: int = 10_000,
        batch_max: int = 500,
        linger_ms: int = 20,
        max_event_bytes: int = 65536,
        validate: bool = True,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
        kafka_options: Mapping[str, Any] | None = None,
        key_hasher: Callable[[str], str] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.buffer_max = buffer_max
        self.batch_max = batch_max
        self.linger_ms = linger_ms
        self.max_event_bytes = max_event_bytes
        self.validate = validate
        self._producer_factory = producer_factory or self._default_producer
        # TLS and SASL options (enforcer.core.connections); the bootstrap above wins.
        self.kafka_options = dict(kafka_options or {})
        # With a keyed API key hash in force, records are keyed by the hash, not the key.
        self.key_hasher = key_hasher
        self._buffer: deque[tuple[bytes, bytes]] = deque()
        self._wakeup = asyncio.Event()
        self._in_flight = 0
        self._counts = dict.fromkeys(("published", "dropped", "invalid", "failed"), 0)
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> EventPublisher:
        kwargs.setdefault("kafka_options", kafka_options(settings))
        kwargs.setdefault("key_hasher", hasher_from_settings(settings))
        return cls(settings.kafka_bootstrap, settings.events_topic, **kwargs)

    def _default_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **{**self.kafka_options, "bootstrap_servers": self.bootstrap},
            acks=1,
            linger_ms=self.linger_ms,
            client_id="enforcer-event-publisher",
        )

    async def start(self) -> None:
        """Connect to Kafka and start sending. Raises KafkaError when the broker is away at
        start-up; events published before start() wait in the buffer."""
        if self._task is not None:
            return
        producer = self._producer_factory()
        await producer.start()
        self._producer = producer
        self._task = asyncio.create_task(self._send_loop(), name=f"event-publisher:{self.topic}")

    def publish(self, event: Mapping[str, Any]) -> bool:
        if len(self._buffer) >= self.buffer_max:
            self._counts["dropped"] += 1
            return False
        doc = dict(event)
        if "event_id" not in doc:
            doc["event_id"] = uuid.uuid4().hex
        if "ts" not in doc:
            doc["ts"] = time.time()
        try:
            if self.validate:
                event_from_dict(doc)
            value = orjson.dumps(doc)
        except (InvalidEvent, TypeError) as exc:
            self._counts["invalid"] += 1
            log.debug("gateway event refused: %s", exc)
            return False
        if len(value) > self.max_event_bytes:
            self._counts["invalid"] += 1
            log.debug("gateway event refused: %d bytes > %d", len(value), self.max_event_bytes)
            return False
        api_key = str(doc["api_key"])
        if self.key_hasher is not None:
            api_key = self.key_hasher(api_key)
        self._buffer.append((api_key.encode(), value))
        self._wakeup.set()
        return True

    def stats(self) -> PublisherStats:
        return PublisherStats(buffered=len(self._buffer), **self._counts)

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every buffered event was sent and answered; False if time ran out."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._buffer or self._in_flight:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is buffered (for up to `timeout_s`), then disconnect."""
        if self._task is not None:
            await self.flush(timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._counts["dropped"] += len(self._buffer)
        self._buffer.clear()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _send_loop(self) -> None:
        assert self._producer is not None
        producer = self._producer
        while True:
            if not self._buffer:
                self._wakeup.clear()
                await self._wakeup.wait()
            count = min(len(self._buffer), self.batch_max)
            batch = [self._buffer.popleft() for _ in range(count)]
            self._in_flight = count
            try:
                futures = []
                for key, value in batch:
                    try:
                        # Waits only when aiokafka's own accumulator is full: backpressure
                        # stays in this task, and the request path keeps appending or dropping.
                        futures.append(await producer.send(self.topic, value, key=key))
                    except KafkaError as exc:
                        self._counts["failed"] += 1
                        log.warning("gateway event not sent: %r", exc)
                for outcome in await asyncio.gather(*futures, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        self._counts["failed"] += 1
                        log.warning("gateway event not acknowledged: %r", outcome)
                    else:
                        self._counts["published"] += 1
            finally:
                self._in_flight = 0
