"""Offsets are committed at most once per commit interval, and at once when the worker stops
or gives its partitions to another: delivered work is never left to be read again for lack of
a commit, and a crash between commits still counts each event once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from enforcer.core.settings import Settings

from .conftest import processed
from .scale import (
    assert_same_as_in_order_replay,
    backlog,
    committed,
    policy_file,
    produce,
)


def _long_interval(kafka_settings: Settings, tmp_path: Path) -> Settings:
    """An interval far longer than the test: only a rebalance or a stop can commit."""
    return kafka_settings.with_(
        policy_file=str(policy_file(tmp_path)),
        batch_max=250,
        commit_interval_s=600.0,
        stall_after_s=1200.0,  # a partition's progress is read from commits
    )


async def _until_processed(workers: tuple, n: int, timeout_s: float) -> None:
    """Until the workers together have finished with `n` records."""
    deadline = time.monotonic() + timeout_s
    while sum(processed(w) for w in workers) < n:
        assert time.monotonic() < deadline, [w.tail() for w in workers]
        await asyncio.sleep(0.1)


async def test_a_stopping_worker_commits_what_it_delivered_within_the_interval(
    kafka_settings: Settings, worker_factory, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    settings = _long_interval(kafka_settings, tmp_path)
    docs = backlog(time.time())[:3000]
    await produce(producer, settings, docs)
    worker = await asyncio.to_thread(worker_factory, settings)
    await _until_processed((worker,), len(docs), 90)
    assert await committed(settings) < len(docs)  # delivered, waiting for the interval
    await asyncio.to_thread(worker.stop)
    assert await committed(settings) == len(docs), worker.tail()


async def test_a_worker_giving_up_partitions_commits_first_and_each_event_counts_once(
    kafka_settings: Settings, worker_factory, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    settings = _long_interval(kafka_settings, tmp_path)
    docs = backlog(time.time())
    half = len(docs) // 2
    await produce(producer, settings, docs[:half])
    first = await asyncio.to_thread(worker_factory, settings)
    await _until_processed((first,), half, 90)
    assert await committed(settings) < half
    # A second worker joins: the first commits its delivered batches as it gives up
    # partitions, so the second reads on from there rather than reading them again.
    second = await asyncio.to_thread(worker_factory, settings)
    await produce(producer, settings, docs[half:])
    await _until_processed((first, second), len(docs), 90)
    await asyncio.sleep(1.0)
    assert processed(first) + processed(second) == len(docs)  # none read twice
    await asyncio.to_thread(first.stop)
    await asyncio.to_thread(second.stop)
    assert await committed(settings) == len(docs), (first.tail(), second.tail())
    await assert_same_as_in_order_replay(settings, Path(settings.policy_file), docs)
