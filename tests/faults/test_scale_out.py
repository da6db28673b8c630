"""Workers killed at an arbitrary moment, added and removed while a stream flows: each event is
counted once and the decisions are those of one worker reading the events in order."""

from __future__ import annotations

import asyncio
import random
import signal
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
    wait_committed,
)


async def test_a_worker_killed_at_random_moments_of_a_backlog_counts_each_event_once(
    kafka_settings: Settings, worker_factory, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    # Small batches: the backlog spans many of them, several in flight at once, so a kill
    # lands mid-backlog however fast the worker drains.
    settings = kafka_settings.with_(policy_file=str(policy_file(tmp_path)), batch_max=250)
    docs = backlog(time.time())
    await produce(producer, settings, docs)
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)  # printed on failure, to replay the same moments

    killed_at = []
    for _ in range(2):
        worker = await asyncio.to_thread(worker_factory, settings)
        # Not at a batch boundary: past a random share of the backlog, then a random part of
        # the next batches' time, so the kill lands anywhere in parse, Redis, publish, commit.
        done = await committed(settings)
        target = done + rng.uniform(0.1, 0.35) * (len(docs) - done)
        while processed(worker) < target - done:
            await asyncio.sleep(0.02)
        await asyncio.sleep(rng.uniform(0.0, 0.08))
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
        killed_at.append(await committed(settings))
    assert all(at < len(docs) for at in killed_at), (seed, killed_at)  # killed mid-backlog

    worker_factory(settings)  # the replacement drains the rest
    await wait_committed(settings, len(docs), 120)
    await assert_same_as_in_order_replay(settings, Path(settings.policy_file), docs)


async def test_workers_joining_and_leaving_mid_stream_count_and_decide_as_one_worker(
    kafka_settings: Settings, worker_factory, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    settings = kafka_settings.with_(policy_file=str(policy_file(tmp_path)))
    docs = backlog(time.time())
    first, second, third = (
        docs[: len(docs) * 4 // 10],
        docs[len(docs) * 4 // 10 : len(docs) * 7 // 10],
        docs[len(docs) * 7 // 10 :],
    )
    await produce(producer, settings, first)
    leaving = await asyncio.to_thread(worker_factory, settings)

    # The second worker joins while events flow: the group rebalances mid-stream.
    flowing = asyncio.create_task(produce(producer, settings, second, rate=1000))
    staying = await asyncio.to_thread(worker_factory, settings)
    await flowing
    await wait_committed(settings, len(first) + len(second), 60, [leaving, staying])
    assert processed(leaving) > 0 and processed(staying) > 0  # both had partitions

    # The first leaves while the rest flows: its partitions move to the one that stays.
    before = processed(staying)
    flowing = asyncio.create_task(produce(producer, settings, third, rate=1000))
    await asyncio.to_thread(leaving.stop)
    assert leaving.proc.returncode == 0, leaving.tail()
    await flowing
    await wait_committed(settings, len(docs), 120, [staying])
    assert processed(staying) > before
    await assert_same_as_in_order_replay(settings, Path(settings.policy_file), docs)
