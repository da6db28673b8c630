"""A batch through parse -> windows -> detectors -> policy -> decision, on real Redis."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from enforcer.core.settings import Settings
from enforcer.engine.pipeline import Pipeline, PolicyHolder, Record
from enforcer.engine.policy import load_policy, parse_policy
from enforcer.engine.policy.compiled import tracking_plan

from .conftest import event
from .stores import make_store

T0 = 1_790_000_000.0

POLICY = """
name: test
version: "1"
windows: [10s, 1m, 10m]
burst: {short: 10s, baseline: 10m, floor_rps: 0.5}
allow:
  api_keys: [k-trusted]
  networks: [192.0.2.0/24]
tiers:
  enterprise: {scale: 10}
rules:
  - name: key-burst
    subject: api_key
    when: ["rps[10s] > 4", "burst > 4"]
    action: throttle
    limit_rps: 1
    for: 5m
  - name: key-flood
    subject: api_key
    when: ["rps[1m] > 6"]
    action: block
    for: 30m
  - name: network-flood
    subject: network
    when: ["rps[1m] > 5"]
    action: throttle
    limit_rps: 10
    for: 5m
    shadow: true
"""


@pytest.fixture
async def pipeline(isolated: Settings) -> Pipeline:
    policy = parse_policy(POLICY)
    p = Pipeline(
        make_store(isolated, policy), PolicyHolder(policy), isolated, clock=lambda: T0 + 3600
    )
    yield p
    await p.store.close()


def records(docs: list[dict]) -> list[Record]:
    return [Record(orjson.dumps(d), topic="t", partition=0, offset=i) for i, d in enumerate(docs)]


def burst(key: str, n: int, start: float, step: float, **fields: object) -> list[dict]:
    return [event(key, start + i * step, **fields) for i in range(n)]


async def test_bursting_key_is_throttled_with_its_reasons(pipeline: Pipeline) -> None:
    result = await pipeline.process(records(burst("k-attacker", 60, T0, 0.1)))
    [decision] = [d for d in result.decisions if d.subject.kind == "api_key"]
    assert (decision.action, decision.rule, decision.limit_rps, decision.mode) == (
        "throttle",
        "key-burst",
        1.0,
        "enforce",
    )
    assert decision.ts == pytest.approx(T0 + 5.9)
    assert decision.expires_at == pytest.approx(T0 + 5.9 + 300)
    assert {r.signal for r in decision.reasons} == {"rps", "burst"}
    assert decision.policy_version.startswith("test@1#")


async def test_human_rate_key_gets_no_decision(pipeline: Pipeline) -> None:
    result = await pipeline.process(records(burst("k-human", 30, T0, 20.0, ip="198.51.100.20")))
    assert result.events == 30
    assert result.decisions == []


async def test_active_decision_is_not_repeated_but_escalation_is_published(
    pipeline: Pipeline,
) -> None:
    first = await pipeline.process(records(burst("k-a", 50, T0, 0.1)))
    again = await pipeline.process(records(burst("k-a", 30, T0 + 5, 0.1)))
    flood = await pipeline.process(records(burst("k-a", 400, T0 + 8, 0.1)))
    key_actions = lambda r: [d.action for d in r.decisions if d.subject.kind == "api_key"]  # noqa: E731
    assert key_actions(first) == ["throttle"]
    assert key_actions(again) == []
    assert key_actions(flood) == ["block"]


async def test_allow_listed_key_and_network_are_never_acted_on(pipeline: Pipeline) -> None:
    docs = burst("k-trusted", 500, T0, 0.05) + burst("k-other", 10, T0, 3.0, ip="192.0.2.10")
    result = await pipeline.process(records(docs))
    assert [d for d in result.decisions if d.subject.value in ("k-trusted", "192.0.2.0/24")] == []


async def test_tier_scales_volume_thresholds(pipeline: Pipeline) -> None:
    result = await pipeline.process(
        records(burst("k-ent", 400, T0, 0.1, tier="enterprise", ip="198.51.100.99"))
    )
    assert [d for d in result.decisions if d.subject.kind == "api_key"] == []


async def test_shadow_rule_decisions_carry_shadow_mode(pipeline: Pipeline) -> None:
    docs = [event(f"k{i}", T0 + i * 0.1, ip="203.0.113.5") for i in range(400)]
    result = await pipeline.process(records(docs))
    [network] = [d for d in result.decisions if d.subject.kind == "network"]
    assert (network.subject.value, network.mode, network.rule) == (
        "203.0.113.0/24",
        "shadow",
        "network-flood",
    )


async def test_bad_records_are_dead_lettered_and_good_ones_still_count(pipeline: Pipeline) -> None:
    docs = [
        orjson.dumps(event("k-mixed", T0)),
        b"{oops",
        orjson.dumps({"event_id": "x"}),
        orjson.dumps(event("k-mixed", T0 + 1)),
    ]
    result = await pipeline.process(
        [Record(d, topic="t", partition=0, offset=i) for i, d in enumerate(docs)]
    )
    assert result.events == 2
    assert [(d.reason, d.record.offset) for d in result.dead_letters] == [
        ("malformed_json", 1),
        ("missing_field", 2),
    ]


async def test_events_from_the_future_or_too_late_are_dead_lettered(pipeline: Pipeline) -> None:
    now = T0 + 3600
    ok = await pipeline.process(records([event("k-t", now - 10)]))
    assert ok.events == 1
    result = await pipeline.process(
        records([event("k-t", now + 600), event("k-t", now - 10 - 121), event("k-t", now - 30)])
    )
    assert [d.reason for d in result.dead_letters] == ["from_future", "too_late"]
    assert result.events == 1


def test_the_tracking_plan_keeps_only_the_counters_the_rules_read() -> None:
    default = tracking_plan(load_policy(Path(__file__).parents[1] / "deploy/policies/default.yaml"))
    # No default rule reads input tokens or cadence.
    assert default.columns == ("req", "out", "rsn", "elic", "harv", "think", "fup", "hop")
    assert default.kinds == ("api_key", "account")
    reads_more = tracking_plan(
        parse_policy(
            """
name: more
version: "1"
windows: [1m]
rules:
  - name: heavy
    subject: network
    when:
      - tokens_per_s[1m] > 100
      - cadence_regularity[1m] > 0.9
    action: throttle
    limit_rps: 1
    for: 1m
"""
        )
    )
    assert reads_more.columns == ("req", "in", "out", "rsn", "gaps", "gap_sum", "gap_squares")
    assert reads_more.kinds == ("api_key", "network")


def test_each_window_keeps_only_the_counters_read_in_it() -> None:
    default = tracking_plan(load_policy(Path(__file__).parents[1] / "deploy/policies/default.yaml"))
    # The one-minute window serves rps, the burst's short window and reasoning-flood's shares;
    # harvest, API thinking and network hops are read over ten minutes only.
    assert default.window_columns == {
        "1m": ("req", "out", "rsn", "elic", "fup"),
        "10m": ("req", "out", "rsn", "elic", "harv", "think", "fup", "hop"),
    }
    burst_only = tracking_plan(
        parse_policy(
            """
name: burst
version: "1"
windows: [1m, 10m, 1h]
burst: {short: 1m, baseline: 1h}
rules:
  - name: spike
    subject: api_key
    when:
      - burst > 3
      - harvest_share[10m] > 0.5
    action: throttle
    limit_rps: 1
    for: 1m
"""
        )
    )
    assert burst_only.window_columns == {"1m": ("req",), "10m": ("req", "harv"), "1h": ("req",)}
