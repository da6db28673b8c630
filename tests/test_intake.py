"""The worker's intake: what a batch taken holds, how far fetching runs ahead, and what a
revoked partition leaves behind. A scripted consumer stands in for Kafka; the worker's own tests
(test_worker_e2e, faults/) run the intake against the real broker."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from enforcer.engine.features.request import Sketches
from enforcer.engine.pipeline import Record
from enforcer.worker.intake import Intake

A = TopicPartition("events", 0)
B = TopicPartition("events", 1)


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None


def messages(tp: TopicPartition, first: int, n: int) -> list[Message]:
    return [Message(tp.topic, tp.partition, o, b"%d" % o) for o in range(first, first + n)]


class ScriptedConsumer:
    """Returns the scripted fetches in turn, then nothing (after the real timeout's pause)."""

    def __init__(self, fetches: list[dict[TopicPartition, list[Message]]]) -> None:
        self.fetches = deque(fetches)
        self.calls = 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Message]]:
        self.calls += 1
        if self.fetches:
            return self.fetches.popleft()
        await asyncio.sleep(timeout_ms / 1000)
        return {}


class Helper:
    """Features by tagging each record; `gate` holds it mid-call when given."""

    def __init__(self, sketches: list[int] | None = None) -> None:
        self.calls: list[int] = []
        self.gate: asyncio.Event | None = None
        self.sketches = deque(sketches or ())  # per call; all of them once these run out

    async def __call__(self, records: list[Record]) -> tuple[list[Any], int]:
        self.calls.append(len(records))
        if self.gate is not None:
            await self.gate.wait()
        sketches = self.sketches.popleft() if self.sketches else Sketches.ALL
        return [("featured", r.offset) for r in records], sketches


async def running(intake: Intake) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(intake.fetch()), asyncio.create_task(intake.feature())]
    await asyncio.sleep(0)
    return tasks


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_batch_is_everything_featured_so_far_with_its_commit_offsets() -> None:
    consumer = ScriptedConsumer([{A: messages(A, 0, 3)}, {B: messages(B, 10, 2), A: []}])
    helper = Helper()
    intake = Intake(lambda: consumer, helper, batch_max=100, wait_ms=5)  # type: ignore[arg-type]
    tasks = await running(intake)
    try:
        await settle()
        taken = intake.take(lambda tp: True)
    finally:
        await stop(tasks)
    assert taken is not None
    assert [(r.partition, r.offset) for r in taken.records] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 10),
        (1, 11),
    ]
    assert taken.ends == {A: 3, B: 12}
    assert taken.featured == [("featured", o) for o in (0, 1, 2, 10, 11)]
    assert taken.sketches == Sketches.ALL
    assert intake.take(lambda tp: True) is None


async def test_a_batch_claims_only_the_sketches_every_part_of_it_was_featured_with() -> None:
    # A policy reload between two featurings: the first part has bands only, the second all.
    consumer = ScriptedConsumer([{A: messages(A, 0, 2)}])
    helper = Helper([Sketches.BANDS, Sketches.ALL])
    intake = Intake(lambda: consumer, helper, batch_max=100, wait_ms=5)  # type: ignore[arg-type]
    tasks = await running(intake)
    try:
        await settle()
        consumer.fetches.append({A: messages(A, 2, 2)})
        await asyncio.sleep(0.02)  # the scripted consumer's idle pause, then the second fetch
        await settle()
        taken = intake.take(lambda tp: True)
    finally:
        await stop(tasks)
    assert taken is not None and len(taken.records) == 4 and len(helper.calls) == 2
    assert taken.sketches == Sketches.BANDS


async def test_fetching_goes_on_while_the_helper_works_and_stops_a_batch_ahead() -> None:
    consumer = ScriptedConsumer([{A: messages(A, i * 4, 4)} for i in range(10)])
    helper = Helper()
    helper.gate = asyncio.Event()  # the helper is busy with the first records it got
    intake = Intake(lambda: consumer, helper, batch_max=8, wait_ms=5)  # type: ignore[arg-type]
    tasks = await running(intake)
    try:
        await settle()
        [with_helper] = helper.calls
        fetched = consumer.calls * 4
        await settle()
        # Fetching went on while the helper worked, until a full batch was waiting, and then
        # paused: the rest of the backlog stays in Kafka.
        assert fetched - with_helper == 8
        assert consumer.calls * 4 == fetched
        helper.gate.set()
        taken = []
        for _ in range(10):
            await settle()
            part = intake.take(lambda tp: True)
            if part is not None:
                taken.append(part)
    finally:
        await stop(tasks)
    # The records fetched while the helper was busy went to it in one call, a batch at most.
    assert helper.calls[1] == 8
    offsets = [r.offset for part in taken for r in part.records]
    assert offsets == list(range(40))
    assert all(len(part.records) <= 8 for part in taken)
    assert taken[-1].ends == {A: 40}


async def test_a_taken_batch_never_exceeds_batch_max() -> None:
    consumer = ScriptedConsumer([{A: messages(A, 0, 5)}, {A: messages(A, 5, 5)}])
    intake = Intake(lambda: consumer, Helper(), batch_max=6, wait_ms=5)  # type: ignore[arg-type]
    tasks = await running(intake)
    try:
        await settle()
        sizes = []
        while (taken := intake.take(lambda tp: True)) is not None:
            sizes.append(len(taken.records))
            await settle()
    finally:
        await stop(tasks)
    assert sizes and max(sizes) <= 6
    assert sum(sizes) == 10


async def test_records_of_a_revoked_partition_are_dropped_even_mid_feature() -> None:
    consumer = ScriptedConsumer([{A: messages(A, 0, 2), B: messages(B, 0, 2)}])
    helper = Helper()
    helper.gate = asyncio.Event()
    intake = Intake(lambda: consumer, helper, batch_max=100, wait_ms=5)  # type: ignore[arg-type]
    tasks = await running(intake)
    try:
        await settle()
        assert helper.calls == [4]  # both partitions' records are with the helper
        intake.drop({B})
        helper.gate.set()
        await settle()
        taken = intake.take(lambda tp: True)  # B may be assigned here again: still left out
    finally:
        await stop(tasks)
    assert taken is not None
    assert {r.partition for r in taken.records} == {0}
    assert taken.ends == {A: 2}
    assert taken.featured == [("featured", 0), ("featured", 1)]


async def test_records_of_partitions_no_longer_owned_are_left_out() -> None:
    consumer = ScriptedConsumer([{A: messages(A, 0, 2), B: messages(B, 0, 2)}])
    intake = Intake(lambda: consumer, Helper(), batch_max=100, wait_ms=5)  # type: ignore[arg-type]
    tasks = await running(intake)
    try:
        await settle()
        taken = intake.take(lambda tp: tp == B)
    finally:
        await stop(tasks)
    assert taken is not None
    assert {r.partition for r in taken.records} == {1}
    assert taken.ends == {B: 2}


async def test_a_part_larger_than_the_room_left_is_split_with_its_commit_offsets() -> None:
    consumer = ScriptedConsumer([{A: messages(A, 0, 4), B: messages(B, 20, 4)}])
    intake = Intake(lambda: consumer, Helper(), batch_max=8, wait_ms=5)  # type: ignore[arg-type]
    tasks = await running(intake)
    try:
        await settle()
        intake.batch_max = 5  # the part already featured holds 8 records
        first = intake.take(lambda tp: True)
        second = intake.take(lambda tp: True)
    finally:
        await stop(tasks)
    assert first is not None and second is not None
    assert [(r.partition, r.offset) for r in first.records] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 20),
    ]
    assert first.ends == {A: 4, B: 21}
    assert first.featured == [("featured", o) for o in (0, 1, 2, 3, 20)]
    assert [r.offset for r in second.records] == [21, 22, 23]
    assert second.ends == {B: 24}
    assert second.featured == [("featured", o) for o in (21, 22, 23)]
