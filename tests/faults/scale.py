"""What the kill and rebalance tests share: a backlog with a few loud keys among many quiet ones,
the group's progress, the decisions a topic holds, and the comparison of a live run's windows
and decisions with an in-order replay of the same events through one pipeline."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import orjson

from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.core.topics import connect_admin
from enforcer.engine.features.request import COUNTERS
from enforcer.engine.pipeline import Pipeline, PolicyHolder, Record
from enforcer.engine.policy import load_policy

from ..conftest import event, read_topic
from ..stores import make_store
from .conftest import read_windows

# Every rule reads a window longer than the backlog, so each subject's 1h sums hold every one
# of its events: a count that is off by one event shows.
POLICY = """
name: scale
version: "1"
windows: [1m, 10m, 1h]
burst: {short: 1m, baseline: 1h, floor_rps: 0.5}
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[1m] > 2", "requests[1h] >= 1"]
    action: throttle
    limit_rps: 1
    for: 5m
  - name: account-flood
    subject: account
    when: ["rps[1m] > 1000", "rps[1h] > 1000"]
    action: throttle
    limit_rps: 1
    for: 5m
"""
ACCOUNTS = 20
KEYS_PER_ACCOUNT = 5
LOUD_KEYS = ("k0-0", "k7-1", "k13-2", "k19-4")  # 8 events/s of event time: far over 2
LOUD_RPS = 8.0
QUIET_EVERY_S = 20.0  # the other keys: 0.05 events/s, far under
SPAN_S = 600.0


def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def backlog(now: float, seed: int = 18) -> list[dict]:
    """About 22,000 events over ten minutes ending a minute ago, in event-time order."""
    rng = random.Random(seed)
    start = now - SPAN_S - 60
    docs = []
    for account in range(ACCOUNTS):
        for k in range(KEYS_PER_ACCOUNT):
            key = f"k{account}-{k}"
            step = 1 / LOUD_RPS if key in LOUD_KEYS else QUIET_EVERY_S
            ts = start + rng.uniform(0, step)
            while ts < start + SPAN_S:
                docs.append(
                    event(key, ts, account_id=f"acct{account}", input_tokens=rng.randrange(1, 500))
                )
                ts += step * rng.uniform(0.8, 1.2)
    docs.sort(key=lambda d: d["ts"])
    return docs


async def produce(producer, settings: Settings, docs: list[dict], rate: float = 0.0) -> None:
    """Keyed by api_key as the gateway keys them; at `rate` events/s, or at once when 0."""
    began = time.monotonic()
    for i, doc in enumerate(docs):
        await producer.send(
            settings.events_topic, key=doc["api_key"].encode(), value=orjson.dumps(doc)
        )
        if rate and i % 50 == 0:
            ahead = i / rate - (time.monotonic() - began)
            if ahead > 0:
                await producer.flush()
                await asyncio.sleep(ahead)
    await producer.flush()


async def committed(settings: Settings) -> int:
    """Offsets the worker group has committed on the events topic, summed."""
    admin = await connect_admin(settings)
    try:
        offsets = await admin.list_consumer_group_offsets(settings.app_id)
    finally:
        await admin.close()
    return sum(m.offset for tp, m in offsets.items() if tp.topic == settings.events_topic)


async def wait_committed(settings: Settings, n: int, timeout_s: float, workers=()) -> None:
    deadline = time.monotonic() + timeout_s
    done = 0
    while time.monotonic() < deadline:
        done = await committed(settings)
        if done >= n:
            return
        await asyncio.sleep(0.3)
    tails = "\n".join(w.tail() for w in workers)
    raise AssertionError(f"{done} of {n} events committed in {timeout_s:g}s\n{tails}")


def enforced(decisions: list[dict]) -> set[tuple[str, str, str, str]]:
    """Which subjects were given which action by which rule; re-issues of a decision (at
    whatever batch they fall) are the same entry."""
    return {
        (d["subject"]["kind"], d["subject"]["value"], d["rule"], d["action"])
        for d in decisions
        if d["mode"] == "enforce"
    }


async def published(settings: Settings, expected: set, timeout_s: float = 30.0) -> set:
    """The decisions topic's entries once it holds `expected` (or the time is up), and a
    second more for any that should not be there."""

    def seen(ms: list) -> set:
        return enforced([orjson.loads(m.value) for m in ms])

    await read_topic(settings, settings.decisions_topic, lambda ms: seen(ms) >= expected, timeout_s)
    await asyncio.sleep(1.0)
    return seen(await read_topic(settings, settings.decisions_topic, lambda ms: False, 3.0))


async def assert_same_as_in_order_replay(
    settings: Settings, policy_path: Path, docs: list[dict]
) -> None:
    """Every key's and account's windows as the live run left them equal an in-order replay's
    through one pipeline, each key's 1h count is its number of events, and the live run
    published the replay's decisions: the loud keys throttled, nobody else."""
    policy = load_policy(policy_path)
    replayed = settings.with_(redis_prefix=f"{settings.redis_prefix}-replay")
    replay = Pipeline(make_store(replayed, policy), PolicyHolder(policy), replayed)
    live = make_store(settings, policy)
    expected: set = set()
    try:
        for start in range(0, len(docs), 500):
            part = docs[start : start + 500]
            result = await replay.process([Record(orjson.dumps(d), topic="file") for d in part])
            expected |= enforced([d.to_dict() for d in result.decisions])
        per_key: dict[str, int] = {}
        for doc in docs:
            per_key[doc["api_key"]] = per_key.get(doc["api_key"], 0) + 1
        subjects = [Subject("api_key", k) for k in per_key] + [
            Subject("account", f"acct{a}") for a in range(ACCOUNTS)
        ]
        for subject in subjects:
            drained = await read_windows(live, subject)
            in_order = await read_windows(replay.store, subject)
            for window in in_order.sums:
                for counter in COUNTERS:
                    assert drained.sums[window][counter] == in_order.sums[window][counter], (
                        subject,
                        window,
                        counter,
                    )
            if subject.kind == "api_key":
                assert drained.sums["1h"]["req"] == per_key[subject.value], subject
    finally:
        await replay.store.drop_namespace()
        await replay.store.close()
        await live.close()
    assert expected == {("api_key", k, "key-flood", "throttle") for k in LOUD_KEYS}
    assert await published(settings, expected) == expected
