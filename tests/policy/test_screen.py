"""The screen that spares most subjects a policy evaluation never hides a match."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from enforcer.core.counts import CampaignStats, SumsLayout, WindowStats
from enforcer.core.decisions import Subject
from enforcer.engine.detectors import signals_of
from enforcer.engine.features.request import COUNTERS
from enforcer.engine.policy import Policy, load_policy, parse_policy
from enforcer.engine.policy.compiled import CompiledPolicy

ROOT = Path(__file__).parents[2]
NAMES = (*COUNTERS, "gaps", "gap_sum", "gap_squares")
TIERS = (None, "enterprise", "research", "free")


def stats_of(
    subject: Subject, policy: Policy, rng: random.Random, scale: float, drop: float = 0.0
) -> WindowStats:
    """Random sums; with `drop`, each window is left out of the layout with that chance, as a
    subject that keeps only some windows is."""
    windows = [w for w in policy.windows if rng.random() >= drop]
    kept = tuple(w.name for w in windows)
    row: list[float] = [1, 0, 0, 1_790_000_000.0]
    for w in windows:
        req = rng.choice([0.0, 1.0, 2.0, rng.uniform(0, 3 * scale * w.seconds)])
        row += [
            req,
            rng.uniform(0, 1e5),
            rng.uniform(0, 1e5),
            rng.uniform(0, 1e5),
            rng.uniform(0, req),  # elic
            rng.uniform(0, req),  # harv
            rng.uniform(0, req),  # think
            rng.uniform(0, req),  # fup
            rng.uniform(0, req),  # hop
            rng.uniform(0, req),  # ng
            rng.uniform(0, 1e4),
            rng.uniform(0, 1e6),
        ]
    return WindowStats(subject, row[3], 1, 0, 0, tuple(row), SumsLayout(NAMES, kept, 4))


@pytest.mark.parametrize(
    "policy_file", ["deploy/policies/default.yaml", "tests/policy/good/overrides.yaml"]
)
def test_a_subject_the_screen_turns_away_matches_no_rule(policy_file: str) -> None:
    policy = load_policy(ROOT / policy_file)
    rng = random.Random(7)
    turned_away = matched = 0
    for _ in range(6000):
        kind = rng.choice(sorted({r.subject for r in policy.rules}))
        tier = rng.choice(TIERS)
        subject = Subject(kind, rng.choice(["k-1", "k-bench", "acct-2", "203.0.113.0/24"]))
        stats = stats_of(subject, policy, rng, rng.choice([0.02, 0.3, 1.0, 10.0, 80.0]), drop=0.1)
        # Mostly none; some subjects use several templates, each its own campaign.
        campaigns = [
            CampaignStats(f"f{i}", rng.randint(1, 60), rng.randint(1, 30), rng.randint(1, 30))
            for i in range(rng.choice([0, 0, 0, 0, 1, 2, 3]))
        ]
        verdicts = CompiledPolicy(policy).evaluate(
            subject, signals_of(stats, policy.windows, policy.burst, campaigns), tier
        )
        matched += bool(verdicts)
        screen = CompiledPolicy(policy).screen(kind, tier)
        screened = screen is not None and subject not in policy.subject_overrides
        if screened and not screen.clears(stats, campaigns):
            turned_away += 1
            assert verdicts == [], (subject, tier, stats.sums, campaigns)
    # The draw exercises both sides of the screen.
    assert turned_away > 500 and matched > 100


def test_a_rule_without_a_cheap_check_sends_every_subject_to_evaluation() -> None:
    policy = parse_policy(
        """
name: shares
version: "1"
windows: [1m, 10m]
rules:
  - name: flood
    subject: api_key
    when:
      - rps[1m] > 5
    action: block
    for: 1m
  - name: eliciting
    subject: api_key
    when:
      - reasoning_share[10m] >= 0.9
    action: degrade
    for: 1m
"""
    )
    assert CompiledPolicy(policy).screen("api_key", None) is None


def test_the_screen_floor_follows_the_tier_scale() -> None:
    policy = load_policy(ROOT / "tests/policy/good/overrides.yaml")
    rng = random.Random(1)
    subject = Subject("api_key", "k-1")
    stats = stats_of(subject, policy, rng, 1.0)
    at = stats.layout.offsets["1m"]
    # 400 requests in a minute: over key-flood's 6 rps, under enterprise's 60 rps; key-burst
    # reads 10s, so that window is emptied.
    row = list(stats.row)
    row[at] = 400.0
    row[stats.layout.offsets["10s"]] = 0.0
    busy = stats._replace(row=tuple(row))
    plain = CompiledPolicy(policy).screen("api_key", None)
    enterprise = CompiledPolicy(policy).screen("api_key", "enterprise")
    assert plain is not None and enterprise is not None
    assert plain.clears(busy, [])
    assert not enterprise.clears(busy, [])
