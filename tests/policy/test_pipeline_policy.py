"""The policy language through the real pipeline on real Redis: escalation ladders count strikes
in Redis decision state, shadow verdicts never enforce, allow lists win."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from enforcer.core.decisions import Decision, Subject
from enforcer.core.settings import Settings
from enforcer.engine.pipeline import Pipeline, PolicyHolder, Record
from enforcer.engine.policy import Policy, parse_policy
from enforcer.store.keys import slot_group

from ..conftest import event
from ..stores import make_store

T0 = 1_790_000_000.0

LADDER = """
name: ladder
version: "1"
windows: [10s, 1m]
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[10s] > 2"]
    action: throttle
    limit_rps: 1
    for: 1m
    escalate:
      - after: 2
        action: degrade
        for: 5m
      - after: 3
        action: block
        for: 10m
    strikes_within: 1h
"""


async def make_pipeline(settings: Settings, policy: Policy) -> Pipeline:
    return Pipeline(
        make_store(settings, policy), PolicyHolder(policy), settings, check_future=False
    )


@pytest.fixture
async def ladder(isolated: Settings) -> AsyncIterator[Pipeline]:
    p = await make_pipeline(isolated, parse_policy(LADDER))
    yield p
    await p.store.close()


def flood(key: str, start: float, n: int = 40, **fields: object) -> list[Record]:
    """n requests within 4 s of event time: about 10 rps over the 10 s window."""
    docs = [event(key, start + i * 0.1, **fields) for i in range(n)]
    return [Record(orjson.dumps(d), topic="t", partition=0, offset=i) for i, d in enumerate(docs)]


def of(decisions: list[Decision], key: str) -> list[Decision]:
    return [d for d in decisions if d.subject.key == f"api_key:{key}"]


async def test_repeat_offender_climbs_the_ladder_one_step_per_strike(ladder: Pipeline) -> None:
    seen = []
    # Each flood comes after the previous decision expired, so each one is a fresh offence.
    for start in (T0, T0 + 600, T0 + 1200, T0 + 1800):
        [decision] = of((await ladder.process(flood("k-repeat", start))).decisions, "k-repeat")
        seen.append(decision)
    assert [d.action for d in seen] == ["throttle", "throttle", "degrade", "block"]
    assert [d.limit_rps for d in seen] == [1.0, 1.0, None, None]
    assert [round(d.expires_at - d.ts) for d in seen if d.expires_at] == [60, 60, 300, 600]
    # An escalated decision says why: the strikes it counted against the step's threshold.
    escalation = [r for r in seen[3].reasons if r.detector == "escalation"]
    assert [(r.signal, r.value, r.threshold, r.window) for r in escalation] == [
        ("strikes", 3.0, 3.0, "1h")
    ]
    assert all(r.detector != "escalation" for r in seen[0].reasons + seen[1].reasons)


async def test_strikes_older_than_the_horizon_are_forgotten(ladder: Pipeline) -> None:
    for start in (T0, T0 + 600):
        await ladder.process(flood("k-reformed", start))
    # Two hours later (horizon 1h) the key starts from the bottom of the ladder again.
    [decision] = of(
        (await ladder.process(flood("k-reformed", T0 + 600 + 7200))).decisions, "k-reformed"
    )
    assert decision.action == "throttle"


async def test_a_still_matching_subject_escalates_as_soon_as_it_has_enough_strikes(
    ladder: Pipeline,
) -> None:
    [first] = of((await ladder.process(flood("k-steady", T0))).decisions, "k-steady")
    # Near the throttle's expiry it still floods: the renewal is its second decision ...
    [renewal] = of((await ladder.process(flood("k-steady", T0 + 50))).decisions, "k-steady")
    # ... so the next batch in which it floods gets the next step at once.
    [step] = of((await ladder.process(flood("k-steady", T0 + 55))).decisions, "k-steady")
    assert (first.action, renewal.action, step.action) == ("throttle", "throttle", "degrade")


async def test_escalation_costs_no_extra_redis_round_trip(ladder: Pipeline) -> None:
    costs = []
    for start in (T0, T0 + 600, T0 + 1200):
        before = ladder.store.round_trips
        result = await ladder.process(flood("k-cost", start))
        costs.append((ladder.store.round_trips - before, of(result.decisions, "k-cost")[0].action))
    assert costs[0][0] == costs[2][0]
    assert [c[1] for c in costs] == ["throttle", "throttle", "degrade"]


async def test_strike_keys_share_the_subject_hash_tag_and_expire(
    ladder: Pipeline, redis_client: aioredis.Redis, isolated: Settings
) -> None:
    await ladder.process(flood("k-tagged", T0))
    keys = [
        k.decode() async for k in redis_client.scan_iter(match=f"{isolated.redis_prefix}:*strikes*")
    ]
    group = slot_group(Subject("api_key", "k-tagged"))
    assert keys == [
        f"{isolated.redis_prefix}:{{{group}}}:api_key:k-tagged:strikes:enforce:key-flood"
    ]
    assert 3600 < await redis_client.ttl(keys[0]) <= 7200


SHADOW = """
name: shadow-all
version: "1"
mode: shadow
windows: [10s, 1m]
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[10s] > 2"]
    action: block
    for: 10m
  - name: network-flood
    subject: network
    when: ["rps[10s] > 2"]
    action: throttle
    limit_rps: 5
    for: 10m
"""


async def test_a_shadow_policy_publishes_only_shadow_decisions(isolated: Settings) -> None:
    pipeline = await make_pipeline(isolated, parse_policy(SHADOW))
    try:
        decisions = (await pipeline.process(flood("k-watched", T0))).decisions
    finally:
        await pipeline.store.close()
    assert {(d.subject.kind, d.action, d.mode) for d in decisions} == {
        ("api_key", "block", "shadow"),
        ("network", "throttle", "shadow"),
    }


ALLOW = """
name: allow
version: "1"
windows: [10s, 1m]
allow:
  api_keys: [k-partner]
  accounts: [acct-partner]
  networks: [198.51.100.0/24]
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[10s] > 2"]
    action: block
    for: 10m
  - name: account-flood
    subject: account
    when: ["rps[10s] > 2"]
    action: block
    for: 10m
  - name: network-flood
    subject: network
    when: ["rps[10s] > 2"]
    action: block
    for: 10m
overrides:
  - api_key: k-partner
    rules:
      key-flood: {scale: 0.001}
"""


async def test_allow_listed_subjects_get_no_decision_whatever_they_send(isolated: Settings) -> None:
    pipeline = await make_pipeline(isolated, parse_policy(ALLOW))
    try:
        listed = flood("k-partner", T0, account_id="acct-partner", ip="198.51.100.7")
        other = flood("k-stranger", T0, account_id="acct-stranger", ip="203.0.113.7")
        decisions = (await pipeline.process(listed + other)).decisions
    finally:
        await pipeline.store.close()
    assert sorted(d.subject.key for d in decisions) == [
        "account:acct-stranger",
        "api_key:k-stranger",
        "network:203.0.113.0/24",
    ]
