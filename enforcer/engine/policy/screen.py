"""A cheap necessary condition for a policy's rules, so that most subjects skip evaluation.

A rule matches only when every one of its conditions holds, and most rules carry a volume
floor (`requests[10m] >= 2`, `rps[1m] > 1`) or a campaign condition. Most subjects of a batch
(a person's one request this minute) are far below every floor. The screen reads the floors
straight from a subject's window sums, and only a subject that clears one of them gets its
signals computed and the policy evaluated.

The screen never changes a verdict. It is conservative by construction: a rule without such
a floor makes it pass every subject of that kind, and a subject with an override of its own
is always evaluated in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from enforcer.engine.policy.evaluate import plain_effective, rules_for
from enforcer.engine.policy.model import Policy, Rule
from enforcer.store.windows import CampaignStats, WindowStats

# Floors are lowered by this relative margin so that float rounding in a signal (rps is
# requests / seconds, a share a quotient) can never make the screen refuse a match.
_SLACK = 1e-9
# The counters a check reads, by index: requests, eliciting requests, harvesting requests.
_COUNTERS = ("req", "elic", "harv", "think", "hop")
_REQ = 0
_SHARES = {
    "elicitation_share": 1,
    "harvest_share": 2,
    # A human key seldom changes network or asks for API thinking on most requests: rules on
    # these shares turn most subjects away even where their volume floor is low.
    "thinking_share": 3,
    "network_hop_share": 4,
}
_CAMPAIGNS = {"campaign_keys": 0, "campaign_networks": 1, "campaign_accounts": 2}


class Check(NamedTuple):
    """One condition of a rule, read straight from window sums or campaign sizes."""

    kind: str  # "requests": a window's request count; "share": a counter's share of them;
    # "campaign": the largest campaign among the subject's templates
    window: str | None
    slot: int  # the counter (in _COUNTERS) or the campaign size (in _CAMPAIGNS) read
    threshold: float  # the least value that can satisfy the condition, tier scale applied


def _lowered(threshold: float) -> float:
    return threshold - _SLACK * max(1.0, abs(threshold))


class Screen(NamedTuple):
    # Per rule its checks; a subject may match the rule only if it passes them all.
    rules: tuple[tuple[Check, ...], ...]

    def clears(self, stats: WindowStats, campaigns: Sequence[CampaignStats]) -> bool:
        """False only when no rule of the screen can match the subject."""
        row, offsets = stats.row, stats.layout.offsets
        columns = stats.layout.columns(_COUNTERS)
        for checks in self.rules:
            for kind, window, slot, threshold in checks:
                if kind == "campaign":
                    if not campaigns or max(int(c[1 + slot]) for c in campaigns) < threshold:
                        break
                    continue
                at = offsets.get(window)  # type: ignore[arg-type]
                if at is None:  # the subject does not keep the window: the signal is absent
                    break
                req = row[at + columns[_REQ]] if columns[_REQ] >= 0 else 0.0
                if kind == "requests":
                    if req < threshold:
                        break
                    continue
                part = row[at + columns[slot]] if columns[slot] >= 0 else 0.0
                if req <= 0.0:  # an empty window's share is 0
                    if threshold > 0.0:
                        break
                elif part < threshold * req - _SLACK * max(1.0, req):
                    break
            else:
                return True
        return False


_SCREENS: dict[tuple[str, str, str | None], Screen | None] = {}


def screen_for(policy: Policy, kind: str, tier: str | None) -> Screen | None:
    """The screen for subjects of a kind and tier without overrides of their own; None when
    such subjects must all be evaluated. Cached by the policy's content hash."""
    key = (policy.content_hash, kind, tier)
    if key not in _SCREENS:
        if len(_SCREENS) > 4096:
            _SCREENS.clear()
        _SCREENS[key] = _build(policy, kind, tier)
    return _SCREENS[key]


def _build(policy: Policy, kind: str, tier: str | None) -> Screen | None:
    overrides = (
        (policy.tier_overrides[tier],) if tier is not None and tier in policy.tier_overrides else ()
    )
    seconds = {w.name: w.seconds for w in policy.windows}
    rules = []
    for rule in rules_for(policy, kind):
        effective = plain_effective(policy, rule, overrides, tier)
        if effective is None:  # disabled for this tier: it matches nobody
            continue
        checks = _checks(rule, effective.scale, seconds)
        if not checks:  # nothing cheap to test: every subject must be evaluated
            return None
        rules.append(checks)
    return Screen(tuple(rules))


def _checks(rule: Rule, scale: float, seconds: dict[str, int]) -> tuple[Check, ...]:
    checks = []
    for cond in rule.when:
        if cond.op not in (">", ">="):
            continue
        if cond.signal in _CAMPAIGNS:
            checks.append(
                Check("campaign", None, _CAMPAIGNS[cond.signal], _lowered(cond.threshold))
            )
        elif cond.window not in seconds:
            continue
        elif cond.signal in ("requests", "rps"):
            threshold = cond.threshold * scale  # both are volume signals: the tier scales them
            if cond.signal == "rps":
                threshold *= seconds[cond.window]
            checks.append(Check("requests", cond.window, _REQ, _lowered(threshold)))
        elif cond.signal in _SHARES:
            checks.append(Check("share", cond.window, _SHARES[cond.signal], cond.threshold))
    return tuple(checks)
