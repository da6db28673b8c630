"""The live source: gateway events from Kafka in batches, each batch's output delivered before
its offsets are committed.

A batch is whatever the consumer has fetched since the last one (aiokafka's getmany, up to
ENFORCER_BATCH_MAX records), so a lone event is judged at once and a backlog in full batches;
Faust's per-event stream is not on this path. For each batch, in order: the pipeline counts and
judges it; its dead letters and decisions go to the producer, the decisions acknowledged; decision
state is told they were delivered; the offsets are committed. A crash at any point redelivers
the batch; the window store recognises its events and decision state republishes what was not
delivered, so nothing is lost and nothing is counted twice.

No record can stop a partition: a record the engine fails on is found by retrying the batch in
halves and dead-lettered, and a dead letter that cannot be written is logged and skipped
(enforcer.worker.sink). A partition that stops advancing anyway is reported stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from enforcer.core.connections import kafka_options
from enforcer.core.ports import StorageError
from enforcer.core.settings import Settings
from enforcer.engine.pipeline import BatchResult, DeadLetter, Pipeline, Record
from enforcer.store.windows import WindowStore
from enforcer.worker import metrics
from enforcer.worker.sink import DeliveryError, KafkaSink

log = logging.getLogger("enforcer.worker")

_MAX_BACKOFF_S = 5.0


class _Partition:
    """What the stream knows of one assigned partition: the next offset to process (None until
    the first batch from it) and when that last moved."""

    __slots__ = ("next_offset", "advanced_at", "stalled")

    def __init__(self, now: float) -> None:
        self.next_offset: int | None = None
        self.advanced_at = now
        self.stalled = False


class EventStream:
    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        sink: KafkaSink,
        store: WindowStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.sink = sink
        self.store = store  # the pipeline's, confirming what the sink delivered
        self.clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self.partitions: dict[TopicPartition, _Partition] = {}
        # Held while a batch runs; a rebalance waits for it, so a revoked partition's batch is
        # delivered and committed before another worker reads the partition.
        self._batch = asyncio.Lock()
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the stream is not started")
        return self._consumer

    async def start(self) -> None:
        # aiokafka clients belong to the running loop, so they are made here.
        settings = self.settings
        session_ms = int(settings.kafka_session_timeout_s * 1000)
        self._consumer = AIOKafkaConsumer(
            **kafka_options(settings),
            group_id=settings.app_id,
            client_id=f"{settings.app_id}-events",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(500, session_ms // 3),
            # The broker refuses events over the topic's max.message.bytes; fetch whatever it
            # holds, so an oversize record is read (and dead-lettered), never stuck behind.
            max_partition_fetch_bytes=2 * 1_048_576,
        )
        await self.consumer.start()
        self.consumer.subscribe([self.settings.events_topic], listener=_Rebalance(self))

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Leave the group (its partitions move at once rather than after the session timeout)
        within `timeout_s`, whatever the broker is doing."""
        self._stopping = True
        if self._consumer is None:
            return
        try:
            await asyncio.wait_for(self.consumer.stop(), timeout_s)
        except (TimeoutError, KafkaError) as exc:
            log.warning("consumer did not leave the group cleanly: %r", exc)

    async def run(self) -> None:
        """Take and handle batches until stopped."""
        wait_ms = int(self.settings.batch_within_s * 1000)
        delay = 0.1
        while not self._stopping:
            try:
                fetched = await self.consumer.getmany(
                    timeout_ms=wait_ms, max_records=self.settings.batch_max
                )
            except KafkaError as exc:
                log.error("fetch failed, retrying in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)
                continue
            delay = 0.1
            if fetched:
                await self.handle(fetched)

    # -- one batch -------------------------------------------------------------------------

    async def handle(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        async with self._batch:
            records: list[Record] = []
            ends: dict[TopicPartition, int] = {}
            for tp, messages in fetched.items():
                if tp not in self.partitions:  # revoked while the fetch was in flight
                    continue
                for m in messages:
                    records.append(Record(m.value or b"", m.key, m.topic, m.partition, m.offset))
                if messages:
                    ends[tp] = messages[-1].offset + 1
            if not records:
                return
            metrics.batch_taken(len(records))
            result = await self._process(records)
            if result is not None:
                self._crash_point("before_publish", result)
                await self._deliver(result)
                self._crash_point("before_confirm", result)
                await self._confirm(result)
                metrics.batch_published(result, time.time())
                self._crash_point("before_commit", result)
            await self._commit(ends)

    async def _process(self, records: list[Record]) -> BatchResult | None:
        """The pipeline over a batch; Redis failures wait or skip as configured, and any other
        failure is narrowed down to the record at fault."""
        delay = 0.1
        while True:
            watermarks = dict(self.pipeline.watermarks)
            try:
                started = time.perf_counter()
                result = await self.pipeline.process(records)
                metrics.BATCH_PROCESSING_SECONDS.observe(time.perf_counter() - started)
                return result
            except StorageError as exc:
                self._restore(watermarks)
                if self.settings.redis_failure == "skip":
                    log.error("redis failed, batch of %d skipped: %s", len(records), exc)
                    metrics.EVENTS_SKIPPED.inc(len(records))
                    return None
                log.error(
                    "redis failed, retrying batch of %d in %.1fs: %s", len(records), delay, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)
            except Exception as exc:
                self._restore(watermarks)
                metrics.ENGINE_ERRORS.inc()
                return await self._isolate(records, exc)

    async def _isolate(self, records: list[Record], exc: Exception) -> BatchResult | None:
        """Run the halves of a batch the engine failed on, down to the single record at fault,
        which is dead-lettered. Safe to repeat: events a failed run counted are recognised."""
        if len(records) == 1:
            log.error(
                "engine failed on %s/%s/%s, dead-lettered: %r",
                records[0].topic,
                records[0].partition,
                records[0].offset,
                exc,
                exc_info=exc,
            )
            detail = f"{type(exc).__name__}: {exc}"
            return BatchResult(dead_letters=[DeadLetter(records[0], "internal_error", detail)])
        half = len(records) // 2
        parts = [await self._process(records[:half]), await self._process(records[half:])]
        return merged([p for p in parts if p is not None]) if any(parts) else None

    def _restore(self, watermarks: dict[tuple[str, int | None], float]) -> None:
        # A failed run may have moved the partitions' event time past events it never counted.
        self.pipeline.watermarks.clear()
        self.pipeline.watermarks.update(watermarks)

    async def _deliver(self, result: BatchResult) -> None:
        delay = 0.1
        try:
            await self.sink.deliver(result)
            return
        except DeliveryError as exc:
            log.error("decisions not delivered, retrying: %s", exc)
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)
            try:
                await self.sink.deliver_decisions(result)
                return
            except DeliveryError as exc:
                log.error("decisions not delivered, retrying in %.1fs: %s", delay, exc)

    async def _confirm(self, result: BatchResult) -> None:
        delay = 0.1
        while result.receipts:
            try:
                await self.store.confirm(result.receipts)
                return
            except StorageError as exc:
                if self.settings.redis_failure == "skip":
                    # Left pending, a decision is published again by its rule's next verdict.
                    n = len(result.receipts)
                    log.error("redis failed, %d deliveries unconfirmed: %s", n, exc)
                    return
                log.error("redis failed, confirming deliveries again in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)

    async def _commit(self, ends: dict[TopicPartition, int]) -> None:
        now = self.clock()
        try:
            await self.consumer.commit(ends)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved the partitions on; their new owner reads the batch again and
            # the window store recognises its events.
            log.warning("offsets not committed after a rebalance: %r", exc)
            return
        for tp, offset in ends.items():
            state = self.partitions.get(tp)
            if state is not None and state.next_offset != offset:
                state.next_offset = offset
                state.advanced_at = now

    def _crash_point(self, point: str, result: BatchResult) -> None:
        if self.settings.crash_at == point and result.decisions:
            log.critical("crash point %s reached: killing the worker", point)
            os.kill(os.getpid(), signal.SIGKILL)

    # -- health ----------------------------------------------------------------------------

    def assigned(self) -> bool:
        return bool(self.partitions)

    def stalled(self) -> list[TopicPartition]:
        return sorted(
            (tp for tp, state in self.partitions.items() if state.stalled),
            key=lambda tp: (tp.topic, tp.partition),
        )

    async def measure_lag(self, timeout_s: float = 2.0) -> int:
        """Lag per assigned partition, end offset minus the next offset to process (fetched
        records not yet processed count as lag), and which partitions are stalled."""
        if self._consumer is None:
            return 0
        assigned = [tp for tp in self.partitions if tp in self.consumer.assignment()]
        if not assigned:
            return 0
        ends = await asyncio.wait_for(self.consumer.end_offsets(assigned), timeout_s)
        now = self.clock()
        total = 0
        for tp in assigned:
            state = self.partitions.get(tp)
            end = ends.get(tp)
            if state is None or end is None:
                continue
            done = state.next_offset
            if done is None:
                committed = await asyncio.wait_for(self.consumer.committed(tp), timeout_s)
                done = committed if committed is not None else (await self._first_offset(tp))
            lag = max(0, end - done)
            labels = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(lag)
            stalled = lag > 0 and now - state.advanced_at > self.settings.stall_after_s
            if stalled and not state.stalled:
                log.error(
                    "partition %s/%d stalled: %d records behind, no progress for %.0fs",
                    tp.topic,
                    tp.partition,
                    lag,
                    now - state.advanced_at,
                )
            state.stalled = stalled
            metrics.PARTITION_STALLED.labels(*labels).set(1 if stalled else 0)
            total += lag
        return total

    async def _first_offset(self, tp: TopicPartition) -> int:
        found = await self.consumer.beginning_offsets([tp])
        return int(found.get(tp, 0))

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        now = self.clock()
        for tp in assigned:
            self.partitions.setdefault(tp, _Partition(now))

    def _revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.partitions.pop(tp, None)
            # Event time is judged per partition; its next owner judges it afresh.
            self.pipeline.watermarks.pop((tp.topic, tp.partition), None)
            labels = (tp.topic, str(tp.partition))
            for gauge in (metrics.CONSUMER_LAG, metrics.PARTITION_STALLED):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, stream: EventStream) -> None:
        self.stream = stream

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # The batch in flight finishes first: delivered and committed by this worker.
        async with self.stream._batch:
            self.stream._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.stream._assigned(set(assigned))


def merged(results: list[BatchResult]) -> BatchResult:
    """One result from the results of a batch's parts."""
    out = BatchResult()
    for r in results:
        out.decisions += r.decisions
        out.dead_letters += r.dead_letters
        out.events += r.events
        out.duplicates += r.duplicates
        out.parsed += r.parsed
        out.receipts += r.receipts
        for kind, n in r.too_late.items():
            out.too_late[kind] = out.too_late.get(kind, 0) + n
        if r.newest_event_ts is not None:
            out.newest_event_ts = max(out.newest_event_ts or r.newest_event_ts, r.newest_event_ts)
    return out
