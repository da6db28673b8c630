"""The live source's last stage: decision state is told which publications were delivered, then
the offsets of every batch delivered since the last commit are committed.

A commit waits for the commit interval (ENFORCER_COMMIT_INTERVAL_S), so batches delivered
meanwhile share it: one per batch cost the worker and the group coordinator a round trip per
50 events at 5,000/s. A rebalance and a stop commit at once (commit_delivered), so the next
owner of a partition reads on from where this worker stopped; a crash reads up to one interval
again, and the window store recognises those events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from enforcer.core.ports import StorageError
from enforcer.core.settings import Settings
from enforcer.engine.pipeline import BatchResult
from enforcer.store.windows import WindowStore
from enforcer.worker import metrics
from enforcer.worker.partitions import Partitions

log = logging.getLogger("enforcer.worker")

_MAX_BACKOFF_S = 5.0


class Judged(NamedTuple):
    """A batch judged and, once it reaches this stage, delivered."""

    number: int
    result: BatchResult | None  # None: the batch was skipped (Redis failed, set to skip)
    ends: dict[TopicPartition, int]  # the offsets to commit once the batch is delivered
    # Fetched, featured, taken, counted and judged (time.perf_counter), for the stage timings;
    # empty for a batch judged on its own after a failure.
    stamps: tuple[float, ...] = ()


class Finish:
    def __init__(
        self,
        settings: Settings,
        store: WindowStore,
        consumer: Callable[[], AIOKafkaConsumer],
        partitions: Partitions,
        clock: Callable[[], float],
        crash_point: Callable[[str, BatchResult], None],
        settle: Callable[[int], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.store = store
        self.consumer = consumer
        self.partitions = partitions
        self.clock = clock
        self.crash_point = crash_point
        self.settle = settle  # a batch is settled once confirmed, committed or not
        # Offsets of batches delivered and confirmed but not yet committed, and the lock a
        # commit holds, so that a rebalance's commit follows one under way.
        self.uncommitted: dict[TopicPartition, int] = {}
        self._committing = asyncio.Lock()

    async def run(self, delivered: asyncio.Queue[Judged]) -> None:
        """Confirm delivered decisions in decision state, then commit the offsets: every batch
        delivered since the last commit in one commit, so a slow commit delays no delivery,
        and at most one commit per commit interval."""
        interval = self.settings.commit_interval_s
        last_commit = self.clock()
        while True:
            batches: list[Judged] = []
            due = last_commit + interval - self.clock()
            if not self.uncommitted:
                batches.append(await delivered.get())
            elif due > 0:  # offsets wait: take batches until their commit is due
                with contextlib.suppress(TimeoutError):
                    batches.append(await asyncio.wait_for(delivered.get(), due))
            while not delivered.empty():
                batches.append(delivered.get_nowait())
            try:
                for batch in batches:
                    result = batch.result
                    if result is not None:
                        self.crash_point("before_confirm", result)
                        await self._confirm(result)
                        metrics.batch_published(result, time.time())
                        self.crash_point("before_commit", result)
                    # Batches are in order: the later end wins.
                    self.uncommitted.update(batch.ends)
                if self.uncommitted and self.clock() - last_commit >= interval:
                    await self.commit_delivered()
                    last_commit = self.clock()
            finally:
                await self.settle(len(batches))

    async def commit_delivered(self) -> None:
        """Commit the offsets of every batch delivered so far, after any commit under way."""
        async with self._committing:
            ends, self.uncommitted = self.uncommitted, {}
            if ends:
                await self._commit(ends)

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
            await self.consumer().commit(ends)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved the partitions on; their new owner reads the batch again and
            # the window store recognises its events.
            log.warning("offsets not committed after a rebalance: %r", exc)
            return
        self.partitions.advanced(ends, now)
