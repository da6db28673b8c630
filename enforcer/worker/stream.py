"""The live source: gateway events from Kafka in batches, each batch's output delivered before
its offsets are committed.

A batch is whatever has been fetched and featured by the time the judge stage is ready for it
(up to ENFORCER_BATCH_MAX records), so a lone event is judged at once and a backlog in full
batches; Faust's per-event stream is not on this path. The stages run at once, each on its own
batches, so the worker's process, its feature helper, Redis and Kafka work side by side:

- fetch and feature (enforcer.worker.intake): records are fetched as they arrive and sent to
  a helper process that parses them and extracts features (enforcer.engine.featuring), while
  the stages below work on earlier batches;
- judge: the pipeline counts the batch in Redis, evaluates the policy and decides what to
  publish, preparing whatever is ready next while Redis counts this one. Decision
  state holds each publication pending under this process's token until its delivery is
  confirmed, so a publication still on its way in the stages below is not published again,
  while one left pending by a worker that died is;
- deliver: dead letters and decisions go to the producer, the decisions acknowledged;
- finish (enforcer.worker.finish): decision state is told they were delivered, and the
  offsets of every batch delivered since the last commit are committed, without holding up
  the next delivery, at most once per commit interval and at once on a rebalance or a stop.

A crash at any point redelivers the uncommitted batches; the window store recognises their
events and decision state republishes what was not delivered, so nothing is lost and nothing is
counted twice. No record can stop a partition: a record the engine fails on is found by
retrying the batch in halves and dead-lettered, and a dead letter that cannot be written is
logged and skipped (enforcer.worker.sink). A partition that stops advancing anyway is reported
stalled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from enforcer.core.connections import kafka_options
from enforcer.core.counts import Counted
from enforcer.core.ports import Reply, StorageError
from enforcer.core.settings import Settings
from enforcer.engine.featuring import FeaturingProcess, HelperFailed
from enforcer.engine.featurize import Featured
from enforcer.engine.pipeline import (
    BatchResult,
    DeadLetter,
    Pipeline,
    Prepared,
    Record,
    merge_results,
)
from enforcer.store.windows import WindowStore
from enforcer.worker import metrics
from enforcer.worker.finish import Finish, Judged
from enforcer.worker.intake import Intake
from enforcer.worker.partitions import Partitions
from enforcer.worker.sink import DeliveryError, KafkaSink

log = logging.getLogger("enforcer.worker")

_MAX_BACKOFF_S = 5.0


class _Taken(NamedTuple):
    """A batch fetched, with its parse and features when the helper did them."""

    number: int  # batches are numbered as taken; each stage handles them in that order
    records: list[Record]
    ends: dict[TopicPartition, int]  # the offsets to commit once the batch is delivered
    featured: list[Featured] | None
    sketches: int  # the MinHash sketches the features include (features.request.Sketches)
    stamps: tuple[float, float, float]  # fetched, featured and taken (time.perf_counter)


class _Started(NamedTuple):
    """A batch prepared, its window update sent to Redis and not yet read."""

    batch: _Taken
    prepared: Prepared
    reply: Reply[Counted] | None
    watermarks: dict[tuple[str, int | None], float]  # the partitions' event time before it
    began: float


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
        self._helper: FeaturingProcess | None = None
        self._intake = Intake(
            lambda: self.consumer,
            self._featurize,
            settings.batch_max,
            int(settings.batch_within_s * 1000),
        )
        self.partitions = Partitions(settings.stall_after_s, clock)
        # Held while a fetched batch is counted in flight; a rebalance takes it, then waits
        # until no batch is in flight, so a revoked partition's batches are delivered
        # and committed before another worker reads the partition.
        self._taking = asyncio.Lock()
        self._in_flight = 0
        self._settled = asyncio.Condition()
        self._finish = Finish(
            settings,
            store,
            lambda: self.consumer,
            self.partitions,
            clock,
            self._crash_point,
            self._settle,
        )
        self._taken = 0  # batches taken so far
        self._stages: list[asyncio.Task[None]] = []

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
        if settings.feature_process:
            self._helper = FeaturingProcess(settings.max_event_bytes)
        await self.consumer.start()
        self.consumer.subscribe([self.settings.events_topic], listener=_Rebalance(self))

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Leave the group (its partitions move at once rather than after the session timeout)
        within `timeout_s`, whatever the broker is doing. Batches not yet committed are left
        to be read again, as after a crash."""
        for task in self._stages:
            task.cancel()
        await asyncio.gather(*self._stages, return_exceptions=True)
        if self._consumer is not None and self._finish.uncommitted:
            # Delivered batches waiting for the commit interval; a stop that cannot commit
            # them leaves them to be read again, as after a crash.
            try:
                await asyncio.wait_for(self.commit_delivered(), timeout_s)
            except (TimeoutError, KafkaError) as exc:
                log.warning("delivered offsets not committed on stop: %r", exc)
        async with self._settled:  # batches left behind are read again, as after a crash
            self._in_flight = 0
            self._settled.notify_all()
        if self._helper is not None:
            self._helper.close()
            self._helper = None
        if self._consumer is None:
            return
        try:
            await asyncio.wait_for(self.consumer.stop(), timeout_s)
        except (TimeoutError, KafkaError) as exc:
            log.warning("consumer did not leave the group cleanly: %r", exc)

    async def run(self) -> None:
        """Fetch, feature, judge, deliver and commit batches until stopped."""
        judged: asyncio.Queue[Judged] = asyncio.Queue(maxsize=1)
        # Unbounded, but emptied whole by each commit.
        delivered: asyncio.Queue[Judged] = asyncio.Queue()
        self._stages = [
            asyncio.create_task(self._intake.fetch(), name="enforcer-fetch"),
            asyncio.create_task(self._intake.feature(), name="enforcer-feature"),
            asyncio.create_task(self._judge_all(judged), name="enforcer-judge"),
            asyncio.create_task(self._deliver_all(judged, delivered), name="enforcer-deliver"),
            asyncio.create_task(self._finish.run(delivered), name="enforcer-commit"),
        ]
        done, _ = await asyncio.wait(self._stages, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                for other in self._stages:
                    other.cancel()
                raise failure

    # -- take (for the judge) --------------------------------------------------------------

    async def _next(self) -> _Taken:
        """Everything fetched and featured so far, up to ENFORCER_BATCH_MAX records, as the
        next batch; waits for a record if there is none."""
        while True:
            await self._intake.wait()
            async with self._taking:
                taken = self._take()
            if taken is not None:
                return taken

    def _next_nowait(self) -> _Taken | None:
        """The next batch if records are ready and no rebalance is under way."""
        if self._taking.locked() or not self._intake.ready():
            return None
        return self._take()

    def _take(self) -> _Taken | None:
        part = self._intake.take(self.partitions.__contains__)
        if part is None or not part.records:
            return None
        self._taken += 1
        self._in_flight += 1
        metrics.batch_taken(len(part.records))
        stamps = (part.fetched_at, part.featured_at, time.perf_counter())
        return _Taken(self._taken, part.records, part.ends, part.featured, part.sketches, stamps)

    async def _featurize(self, records: list[Record]) -> tuple[list[Featured] | None, int]:
        helper = self._helper
        if helper is None:
            return None, 0
        sketches = self.pipeline.policy.compiled.plan.sketches
        try:
            return await helper.featurize([r.value for r in records], sketches), sketches
        except HelperFailed as exc:
            metrics.ENGINE_ERRORS.inc()
            if helper.alive():
                log.error("%s; this batch is featured in the worker's process", exc)
            else:
                log.error("%s; featuring in the worker's process from now on", exc)
                helper.close()
                self._helper = None
            return None, 0

    # -- judge -----------------------------------------------------------------------------

    async def _judge_all(self, out: asyncio.Queue[Judged]) -> None:
        """Judge batches in order, the next one prepared and its window update sent while
        Redis counts this one (as enforcer.engine.staged does for a replay). A failure falls
        back to one batch at a time (_process), where Redis failures wait or skip and any other
        failure is narrowed down to the record at fault."""
        current: _Started | None = None
        while True:
            if current is None:
                current = await self._begin(await self._next(), out)
                if current is None:
                    continue
            # Whatever is ready now is prepared while Redis counts this batch, and sent to Redis
            # before this one is judged. That costs this batch the next one's preparing, and its
            # decision state waits behind the next count; the next batch skips its wait for the
            # judge. At 5,000 events/s, eight alternating pairs: p99 lower in seven (53-114 ms
            # against 65-237); at 1,000 and 2,500/s no change.
            upcoming = self._next_nowait()
            following: _Started | None = None
            try:
                ready = self._prepare(upcoming) if upcoming is not None else None
                counted = await current.reply.result() if current.reply is not None else None
                counted_at = time.perf_counter()
                if ready is not None:
                    following = ready._replace(reply=await self.pipeline.count(ready.prepared))
                result = await self._judge(current, counted)
            except Exception as exc:
                if following is not None and following.reply is not None:
                    await following.reply.abandon()
                self._restore(current.watermarks)
                self.pipeline.renew_delivery_token()
                log.warning("batch %d judged again on its own: %r", current.batch.number, exc)
                for batch in (current.batch, upcoming):
                    if batch is not None:
                        alone = await self._process(batch.records)
                        await out.put(Judged(batch.number, alone, batch.ends))
                current = None
                continue
            stamps = (*current.batch.stamps, counted_at, time.perf_counter())
            await out.put(Judged(current.batch.number, result, current.batch.ends, stamps))
            current = following

    def _prepare(self, batch: _Taken) -> _Started:
        """Parse (when the helper did not), features, grouping: the CPU half of a batch."""
        watermarks = dict(self.pipeline.watermarks)
        began = time.perf_counter()
        featured = batch.featured
        if featured is not None and self.pipeline.policy.compiled.plan.sketches & ~batch.sketches:
            # A reload since the batch was featured reads sketches it was featured without.
            featured = None
        try:
            prepared = self.pipeline.prepare(batch.records, featured)
        except Exception:
            self._restore(watermarks)
            raise
        return _Started(batch, prepared, None, watermarks, began)

    async def _begin(self, batch: _Taken, out: asyncio.Queue[Judged]) -> _Started | None:
        """A batch prepared and its window update sent. On failure the batch is judged on its
        own and handed on, and None is returned."""
        watermarks = dict(self.pipeline.watermarks)
        try:
            started = self._prepare(batch)
            return started._replace(reply=await self.pipeline.count(started.prepared))
        except Exception as exc:
            self._restore(watermarks)
            self.pipeline.renew_delivery_token()
            log.warning("batch %d judged again on its own: %r", batch.number, exc)
        result = await self._process(batch.records)
        await out.put(Judged(batch.number, result, batch.ends))
        return None

    async def _judge(self, started: _Started, counted: Counted | None) -> BatchResult:
        """Policy and decision state for a counted batch."""
        result = await self.pipeline.settle(await self.pipeline.judge(started.prepared, counted))
        metrics.BATCH_PROCESSING_SECONDS.observe(time.perf_counter() - started.began)
        return result

    async def _process(self, records: list[Record]) -> BatchResult | None:
        """A batch on its own, parsed here; Redis failures wait or skip as configured, and any
        other failure is narrowed down to the record at fault."""
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
                self.pipeline.renew_delivery_token()
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
                self.pipeline.renew_delivery_token()
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
        return merge_results([p for p in parts if p is not None]) if any(parts) else None

    def _restore(self, watermarks: dict[tuple[str, int | None], float]) -> None:
        # A failed run may have moved the partitions' event time past events it never counted.
        self.pipeline.watermarks.clear()
        self.pipeline.watermarks.update(watermarks)

    # -- deliver ---------------------------------------------------------------------------

    async def _deliver_all(self, judged: asyncio.Queue[Judged], out: asyncio.Queue[Judged]) -> None:
        """Decisions to the producer, batch after batch, each acknowledged before the next;
        their confirmation and the offsets follow in the stage below, so a batch's decisions
        never wait for the previous batch's commit."""
        while True:
            batch = await judged.get()
            try:
                if batch.result is not None:
                    self._crash_point("before_publish", batch.result)
                    await self._deliver(batch.result)
            except BaseException:
                await self._settle(1)
                raise
            if batch.stamps:
                metrics.batch_stages((*batch.stamps, time.perf_counter()))
            out.put_nowait(batch)

    async def _settle(self, batches: int) -> None:
        async with self._settled:
            self._in_flight -= batches
            self._settled.notify_all()

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

    def _crash_point(self, point: str, result: BatchResult) -> None:
        if self.settings.crash_at == point and result.decisions:
            log.critical("crash point %s reached: killing the worker", point)
            os.kill(os.getpid(), signal.SIGKILL)

    async def commit_delivered(self) -> None:
        """Commit the offsets of every batch delivered so far (see enforcer.worker.finish)."""
        await self._finish.commit_delivered()

    async def settle_in_flight(self) -> None:
        """Wait until every batch taken is delivered and committed, taking no new one."""
        async with self._settled:
            await self._settled.wait_for(lambda: self._in_flight == 0)

    # -- health ----------------------------------------------------------------------------

    def assigned(self) -> bool:
        return self.partitions.assigned()

    def stalled(self) -> list[TopicPartition]:
        return self.partitions.stalled()

    async def measure_lag(self, timeout_s: float = 2.0) -> int:
        if self._consumer is None:
            return 0
        return await self.partitions.measure_lag(self.consumer, timeout_s)

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        self.partitions.assign(assigned)

    def _revoked(self, revoked: set[TopicPartition]) -> None:
        self.partitions.revoke(revoked)
        self._intake.drop(revoked)
        for tp in revoked:
            # Event time is judged per partition; its next owner judges it afresh.
            self.pipeline.watermarks.pop((tp.topic, tp.partition), None)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, stream: EventStream) -> None:
        self.stream = stream

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # No batch is taken meanwhile, and those in flight finish first: delivered and
        # committed by this worker.
        async with self.stream._taking:
            await self.stream.settle_in_flight()
            await self.stream.commit_delivered()
            self.stream._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.stream._assigned(set(assigned))
