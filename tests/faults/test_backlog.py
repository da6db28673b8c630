"""Catching up on a backlog counts what an in-order replay counts: an account's keys sit on
several partitions that the worker reads at different speeds, and none of their events may be
refused as late for it."""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.engine.features.request import COUNTERS
from enforcer.engine.pipeline import Pipeline, PolicyHolder, Record
from enforcer.engine.policy import load_policy

from ..conftest import event
from ..stores import make_store
from .conftest import processed, read_windows, scrape, total, wait_for

POLICY = """
name: backlog
version: "1"
windows: [1m, 10m, 1h]
burst: {short: 1m, baseline: 1h, floor_rps: 0.5}
rules:
  - name: account-flood
    subject: account
    when: ["rps[1m] > 1000", "rps[10m] > 1000", "rps[1h] > 1000"]
    action: throttle
    limit_rps: 1
    for: 5m
"""
ACCOUNTS = 30
KEYS_PER_ACCOUNT = 5
EVENTS = 6000
SPAN_S = 1500.0


def backlog(now: float) -> list[dict]:
    rng = random.Random(8)
    docs = []
    for i in range(EVENTS):
        account = rng.randrange(ACCOUNTS)
        key = f"k{account}-{rng.randrange(KEYS_PER_ACCOUNT)}"
        ts = now - SPAN_S - 60 + SPAN_S * i / EVENTS
        docs.append(event(key, ts, account_id=f"acct{account}", input_tokens=rng.randrange(1, 500)))
    return docs


async def test_a_backlog_through_eight_partitions_counts_accounts_as_an_in_order_replay(
    kafka_settings: Settings, worker_factory, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    settings = kafka_settings.with_(policy_file=str(policy_file))
    docs = backlog(time.time())
    for doc in docs:  # keyed by api_key: an account's keys land on several partitions
        await producer.send(
            settings.events_topic, key=doc["api_key"].encode(), value=orjson.dumps(doc)
        )
    await producer.flush()

    worker = worker_factory(settings)  # starts on the whole backlog at once
    wait_for(lambda: processed(worker) >= EVENTS, 60, "backlog drained", worker)
    samples = scrape(worker)
    assert total(samples, "enforcer_events_processed_total", result="counted") == EVENTS
    assert total(samples, "enforcer_subject_events_too_late_total", subject_kind="account") == 0

    policy = load_policy(policy_file)
    replayed = settings.with_(redis_prefix=f"{settings.redis_prefix}-replay")
    replay = Pipeline(make_store(replayed, policy), PolicyHolder(policy), replayed)
    live = make_store(settings, policy)
    try:
        ordered = sorted(docs, key=lambda d: d["ts"])
        for start in range(0, len(ordered), 500):
            part = ordered[start : start + 500]
            await replay.process([Record(orjson.dumps(d), topic="file") for d in part])
        for account in range(ACCOUNTS):
            subject = Subject("account", f"acct{account}")
            drained = await read_windows(live, subject)
            in_order = await read_windows(replay.store, subject)
            assert drained.watermark == in_order.watermark
            for window in ("1m", "10m", "1h"):
                for counter in COUNTERS:
                    assert drained.sums[window][counter] == in_order.sums[window][counter], (
                        subject,
                        window,
                        counter,
                    )
            assert drained.sums["1h"]["req"] > 0
    finally:
        await replay.store.drop_namespace()
        await replay.store.close()
        await live.close()
