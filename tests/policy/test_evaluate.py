"""Policy evaluation as a plain function: overrides, most specific first; allow lists over all."""

from __future__ import annotations

from pathlib import Path

import pytest

from enforcer.core.decisions import Subject
from enforcer.engine.policy import Policy, load_policy, parse_policy
from enforcer.engine.policy.compiled import CompiledPolicy

GOOD = Path(__file__).parent / "good"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(GOOD / "overrides.yaml")


def key(value: str) -> Subject:
    return Subject("api_key", value)


def signals(rps_10s: float = 0, rps_1m: float = 0, burst: float = 1) -> dict[str, float]:
    return {"rps[10s]": rps_10s, "rps[1m]": rps_1m, "rps[10m]": rps_1m, "burst": burst}


def actions(verdicts: list) -> dict[str, tuple[str, str, float | None]]:
    return {v.mode: (v.rule, v.action, v.limit_rps) for v in verdicts}


def test_rule_as_written_applies_without_a_tier(policy: Policy) -> None:
    assert actions(CompiledPolicy(policy).evaluate(key("k-1"), signals(rps_1m=7))) == {
        "enforce": ("key-flood", "block", None)
    }


def test_tier_scale_raises_volume_thresholds(policy: Policy) -> None:
    assert CompiledPolicy(policy).evaluate(key("k-1"), signals(rps_1m=59), "enterprise") == []
    assert (
        CompiledPolicy(policy).evaluate(key("k-1"), signals(rps_1m=7), "research") == []
    )  # scale 2 -> 12
    assert (
        actions(CompiledPolicy(policy).evaluate(key("k-1"), signals(rps_1m=13), "research"))[
            "enforce"
        ][0]
        == "key-flood"
    )


def test_tier_override_changes_the_action_of_one_rule(policy: Policy) -> None:
    verdicts = CompiledPolicy(policy).evaluate(key("k-1"), signals(rps_1m=61), "enterprise")
    assert actions(verdicts) == {"enforce": ("key-flood", "throttle", 20.0)}


def test_subject_override_beats_tier_and_keeps_what_it_does_not_change(policy: Policy) -> None:
    # k-bench's own scale (50) beats the enterprise tier's (10) for key-flood ...
    assert CompiledPolicy(policy).evaluate(key("k-bench"), signals(rps_1m=299), "enterprise") == []
    # ... while the action still comes from the tier override, the next most specific.
    verdicts = CompiledPolicy(policy).evaluate(key("k-bench"), signals(rps_1m=301), "enterprise")
    assert actions(verdicts) == {"enforce": ("key-flood", "throttle", 20.0)}


def test_override_disables_a_rule_for_one_subject_only(policy: Policy) -> None:
    bursty = signals(rps_10s=50, burst=50)
    assert CompiledPolicy(policy).evaluate(key("k-bench"), bursty) == []
    assert actions(CompiledPolicy(policy).evaluate(key("k-other"), bursty)) == {
        "enforce": ("key-burst", "throttle", 1.0)
    }


def test_tier_override_can_switch_off_a_ladder(policy: Policy) -> None:
    bursty = signals(rps_10s=50, burst=50)
    [plain] = CompiledPolicy(policy).evaluate(key("k-other"), bursty)
    [enterprise] = CompiledPolicy(policy).evaluate(key("k-other"), bursty, "enterprise")
    assert [s.after for s in plain.escalate] == [2, 4]
    assert plain.strikes_within_s == 6 * 3600
    assert enterprise.escalate == ()


def test_network_override_scales_only_its_own_network(policy: Policy) -> None:
    busy = {"rps[1m]": 100.0, "rps[10s]": 100.0, "rps[10m]": 100.0, "burst": 1.0}
    assert CompiledPolicy(policy).evaluate(Subject("network", "203.0.113.0/24"), busy) == []
    assert actions(CompiledPolicy(policy).evaluate(Subject("network", "192.0.2.0/24"), busy)) == {
        "enforce": ("network-flood", "throttle", 10.0)
    }


def test_tier_override_can_put_one_rule_in_shadow_for_that_tier(policy: Policy) -> None:
    busy = {"rps[1m]": 100.0, "rps[10s]": 100.0, "rps[10m]": 100.0, "burst": 1.0}
    account = Subject("account", "acct-1")
    assert actions(CompiledPolicy(policy).evaluate(account, busy)) == {
        "enforce": ("account-flood", "degrade", None)
    }
    assert actions(CompiledPolicy(policy).evaluate(account, busy, "research")) == {
        "shadow": ("account-flood", "degrade", None)
    }


def test_allow_lists_win_over_every_rule_and_every_override(policy: Policy) -> None:
    everything = signals(rps_10s=10_000, rps_1m=10_000, burst=10_000)
    # k-allowed even has an override that makes key-flood fire at almost any rate.
    for tier in (None, "enterprise", "research"):
        assert CompiledPolicy(policy).evaluate(key("k-allowed"), everything, tier) == []
        assert (
            CompiledPolicy(policy).evaluate(Subject("account", "acct-allowed"), everything, tier)
            == []
        )
    assert CompiledPolicy(policy).evaluate(Subject("network", "198.51.100.0/24"), everything) == []
    # The same traffic from subjects that are not listed is acted on.
    assert CompiledPolicy(policy).evaluate(key("k-not-allowed"), everything)
    assert CompiledPolicy(policy).evaluate(Subject("network", "198.51.101.0/24"), everything)


SHADOW_RULES = """
name: shadowing
version: "1"
mode: {mode}
windows: [10s, 1m]
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[1m] > 6"]
    action: throttle
    limit_rps: 1
    for: 5m
  - name: key-flood-strict
    subject: api_key
    when: ["rps[1m] > 3"]
    action: block
    for: 30m
    shadow: true
"""


def test_a_shadow_rule_is_judged_apart_from_the_enforced_ones() -> None:
    policy = parse_policy(SHADOW_RULES.format(mode="enforce"))
    verdicts = CompiledPolicy(policy).evaluate(key("k-1"), {"rps[1m]": 10.0, "rps[10s]": 10.0})
    assert actions(verdicts) == {
        "enforce": ("key-flood", "throttle", 1.0),
        "shadow": ("key-flood-strict", "block", None),
    }
    # Only the shadow rule matches: nothing is enforced.
    assert actions(
        CompiledPolicy(policy).evaluate(key("k-1"), {"rps[1m]": 4.0, "rps[10s]": 4.0})
    ) == {"shadow": ("key-flood-strict", "block", None)}


def test_a_shadow_policy_never_enforces() -> None:
    policy = parse_policy(SHADOW_RULES.format(mode="shadow"))
    verdicts = CompiledPolicy(policy).evaluate(key("k-1"), {"rps[1m]": 10.0, "rps[10s]": 10.0})
    assert [v.mode for v in verdicts] == ["shadow"]
    assert verdicts[0].action == "block"  # the strongest of both rules, watched only
