"""The partitions this worker owns: how far each has been processed, its lag, and whether it
has stopped advancing (stalled) although records wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from enforcer.worker import metrics

log = logging.getLogger("enforcer.worker")


class _Partition:
    """The next offset to process (None until the first batch from it) and when that moved."""

    __slots__ = ("next_offset", "advanced_at", "stalled")

    def __init__(self, now: float) -> None:
        self.next_offset: int | None = None
        self.advanced_at = now
        self.stalled = False


class Partitions:
    def __init__(self, stall_after_s: float, clock: Callable[[], float]) -> None:
        self.stall_after_s = stall_after_s
        self.clock = clock
        self._owned: dict[TopicPartition, _Partition] = {}

    def __contains__(self, tp: TopicPartition) -> bool:
        return tp in self._owned

    def assigned(self) -> bool:
        return bool(self._owned)

    def assign(self, assigned: Iterable[TopicPartition]) -> None:
        now = self.clock()
        for tp in assigned:
            self._owned.setdefault(tp, _Partition(now))

    def revoke(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self._owned.pop(tp, None)
            labels = (tp.topic, str(tp.partition))
            for gauge in (metrics.CONSUMER_LAG, metrics.PARTITION_STALLED):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)

    def advanced(self, ends: dict[TopicPartition, int], now: float) -> None:
        """Offsets committed: each partition's next offset to process."""
        for tp, offset in ends.items():
            state = self._owned.get(tp)
            if state is not None and state.next_offset != offset:
                state.next_offset = offset
                state.advanced_at = now

    def stalled(self) -> list[TopicPartition]:
        return sorted(
            (tp for tp, state in self._owned.items() if state.stalled),
            key=lambda tp: (tp.topic, tp.partition),
        )

    async def measure_lag(self, consumer: AIOKafkaConsumer, timeout_s: float = 2.0) -> int:
        """Lag per assigned partition, end offset minus the next offset to process (fetched
        records not yet processed count as lag), and which partitions are stalled."""
        assigned = [tp for tp in self._owned if tp in consumer.assignment()]
        if not assigned:
            return 0
        ends = await asyncio.wait_for(consumer.end_offsets(assigned), timeout_s)
        now = self.clock()
        total = 0
        for tp in assigned:
            state = self._owned.get(tp)
            end = ends.get(tp)
            if state is None or end is None:
                continue
            done = state.next_offset
            if done is None:
                committed = await asyncio.wait_for(consumer.committed(tp), timeout_s)
                if committed is None:
                    found = await consumer.beginning_offsets([tp])
                    committed = int(found.get(tp, 0))
                done = committed
            lag = max(0, end - done)
            total += lag
            self._observe(tp, state, lag, now)
        return total

    def _observe(self, tp: TopicPartition, state: _Partition, lag: int, now: float) -> None:
        labels = (tp.topic, str(tp.partition))
        metrics.CONSUMER_LAG.labels(*labels).set(lag)
        stalled = lag > 0 and now - state.advanced_at > self.stall_after_s
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
