"""Records from the events topic, fetched and featured without pause, taken as a batch when the
judge stage wants one.

Why not the obvious loop (fetch a batch, feature it, queue it for the judge): at 5,000
events/s it keeps each event waiting twice, measured:
- aiokafka's consumer prefetches: once a fetch has filled its buffer it sends no new fetch
  until getmany has emptied the buffer. A loop that calls getmany only when it wants its next
  batch gets the records that had arrived by the end of its previous call, so every event waits
  about a batch interval before it is even fetched (30-40 ms).
- a batch fetched and featured ahead, then queued, waits there while the judge finishes the
  batch before (another 30-40 ms), and its newest events are left in Kafka meanwhile.

Here one task calls getmany as soon as each call returns, a second sends whatever has been
fetched to the feature helper as soon as the helper is free, and the judge takes everything
featured so far (up to ENFORCER_BATCH_MAX records) at the moment it is ready for it. Each
buffer is bounded by a batch: under a backlog the tasks pause and the backlog stays in Kafka, to
be drained in full batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import reduce
from operator import and_
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from enforcer.engine.featurize import Featured
from enforcer.engine.pipeline import Record

log = logging.getLogger("enforcer.worker")

_MAX_BACKOFF_S = 5.0

# Parse and features of some records: one Featured per record, or None (featured later, in the
# worker's process), and the MinHash sketches the features include (features.request.Sketches).
Featurize = Callable[[list[Record]], Awaitable[tuple[list[Featured] | None, int]]]


class Intook(NamedTuple):
    """Records fetched and featured, in partition order, with the offsets that commit them."""

    records: list[Record]
    ends: dict[TopicPartition, int]
    featured: list[Featured] | None
    sketches: int
    # When (time.perf_counter) the oldest of these records was fetched, and when they were
    # featured: the worker's stage timings (metrics.batch_stages).
    fetched_at: float = 0.0
    featured_at: float = 0.0


class Intake:
    def __init__(
        self,
        consumer: Callable[[], AIOKafkaConsumer],
        featurize: Featurize,
        batch_max: int,
        wait_ms: int,
    ) -> None:
        self._consumer = consumer  # the stream's, once started
        self._featurize = featurize
        self.batch_max = batch_max
        self.wait_ms = wait_ms
        self._fetched: deque[tuple[TopicPartition, list[Any], float]] = deque()  # and when
        self._n_fetched = 0
        self._ready: deque[Intook] = deque()
        self._n_ready = 0
        self._changed = asyncio.Event()  # set whenever a buffer changes
        # Partitions revoked while a part was being featured are left out when it is kept.
        self._revoked: list[set[TopicPartition]] = []

    def ready(self) -> bool:
        return bool(self._ready)

    async def fetch(self) -> None:
        """Fetch until cancelled; a failed fetch is retried with a growing pause."""
        delay = 0.1
        while True:
            await self._until(lambda: self._n_fetched < self.batch_max)
            try:
                # A rebalance runs inside getmany (see the stream's listener).
                fetched = await self._consumer().getmany(
                    timeout_ms=self.wait_ms, max_records=self.batch_max
                )
            except KafkaError as exc:
                log.error("fetch failed, retrying in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)
                continue
            delay = 0.1
            now = time.perf_counter()
            chunks = [(tp, ms, now) for tp, ms in fetched.items() if ms]
            if chunks:
                self._fetched.extend(chunks)
                self._n_fetched += sum(len(ms) for _, ms, _ in chunks)
                self._changed.set()

    async def feature(self) -> None:
        """Feature whatever has been fetched, a batch at most at a time, until cancelled."""
        while True:
            await self._until(lambda: self._n_fetched > 0 and self._n_ready < self.batch_max)
            records, ends, fetched_at = self._take_fetched()
            self._changed.set()  # room to fetch into
            revoked_before = len(self._revoked)
            featured, sketches = await self._featurize(records)
            part = _without(
                Intook(records, ends, featured, sketches, fetched_at, time.perf_counter()),
                set().union(*self._revoked[revoked_before:]),
            )
            self._revoked.clear()
            if part.records:
                self._ready.append(part)
                self._n_ready += len(part.records)
            self._changed.set()

    async def wait(self) -> None:
        """Until some records are featured and ready to take."""
        await self._until(lambda: bool(self._ready))

    def take(self, owned: Callable[[TopicPartition], bool]) -> Intook | None:
        """The records ready, oldest first, up to batch_max records, with the offsets that
        commit them; those of partitions no longer `owned` are left out (their next owner
        reads them). None when nothing is ready."""
        parts: list[Intook] = []
        room = self.batch_max
        while self._ready and room > 0:
            part = self._ready.popleft()
            if len(part.records) > room:
                part, rest = _split(part, room)
                self._ready.appendleft(rest)
            parts.append(part)
            room -= len(part.records)
        taken = self.batch_max - room
        self._n_ready -= taken
        self._changed.set()
        if not parts:
            return None
        records = [r for p in parts for r in p.records]
        ends: dict[TopicPartition, int] = {}
        for p in parts:
            ends.update(p.ends)
        whole = all(p.featured is not None for p in parts)
        featured = [f for p in parts for f in (p.featured or ())] if whole else None
        sketches = reduce(and_, (p.sketches for p in parts)) if whole else 0
        oldest = parts[0]
        batch = Intook(records, ends, featured, sketches, oldest.fetched_at, oldest.featured_at)
        return _without(batch, {tp for tp in ends if not owned(tp)})

    def drop(self, revoked: Iterable[TopicPartition]) -> None:
        """Forget records of revoked partitions: they were never counted, and whichever worker
        gets the partition next reads them again from the committed offset."""
        gone = set(revoked)
        self._revoked.append(gone)
        self._fetched = deque(chunk for chunk in self._fetched if chunk[0] not in gone)
        self._n_fetched = sum(len(ms) for _, ms, _ in self._fetched)
        kept = [_without(p, gone) for p in self._ready]
        self._ready = deque(p for p in kept if p.records)
        self._n_ready = sum(len(p.records) for p in self._ready)
        self._changed.set()

    def _take_fetched(self) -> tuple[list[Record], dict[TopicPartition, int], float]:
        """Fetched records up to a batch, their offsets' ends and when the oldest was fetched."""
        records: list[Record] = []
        ends: dict[TopicPartition, int] = {}
        room = self.batch_max
        oldest = self._fetched[0][2] if self._fetched else time.perf_counter()
        while self._fetched and room > 0:
            tp, messages, at = self._fetched.popleft()
            if len(messages) > room:
                self._fetched.appendleft((tp, messages[room:], at))
                messages = messages[:room]
            room -= len(messages)
            for m in messages:
                records.append(Record(m.value or b"", m.key, m.topic, m.partition, m.offset))
            ends[tp] = messages[-1].offset + 1
        self._n_fetched -= len(records)
        return records, ends, oldest

    async def _until(self, condition: Callable[[], bool]) -> None:
        # Every task waits on the one event; each wakes on any change and looks again.
        while not condition():
            self._changed.clear()
            await self._changed.wait()


def _split(part: Intook, n: int) -> tuple[Intook, Intook]:
    """The part's first n records and the rest, each with the offsets that commit it."""
    head = part.records[:n]
    ends = {TopicPartition(r.topic, r.partition): (r.offset or 0) + 1 for r in head}
    tail = part.records[n:]
    later = {TopicPartition(r.topic, r.partition) for r in tail}
    featured = part.featured
    return (
        part._replace(records=head, ends=ends, featured=None if featured is None else featured[:n]),
        part._replace(
            records=tail,
            ends={tp: end for tp, end in part.ends.items() if tp in later},
            featured=None if featured is None else featured[n:],
        ),
    )


def _without(part: Intook, gone: set[TopicPartition]) -> Intook:
    """The part without the records of the partitions `gone`."""
    if not gone or not any(tp in gone for tp in part.ends):
        return part
    keep = [TopicPartition(r.topic, r.partition) not in gone for r in part.records]
    records = [r for r, k in zip(part.records, keep, strict=True) if k]
    featured = None
    if part.featured is not None:
        featured = [f for f, k in zip(part.featured, keep, strict=True) if k]
    ends = {tp: end for tp, end in part.ends.items() if tp not in gone}
    return part._replace(records=records, ends=ends, featured=featured)
