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

from collections.abc import Callable, Sequence
from typing import NamedTuple

from enforcer.core.counts import CampaignStats, WindowStats
from enforcer.engine.policy.evaluate import Effective
from enforcer.engine.policy.model import Policy, Rule

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


def build_screen(
    policy: Policy, rules: Sequence[Rule], effective: Callable[[Rule], Effective | None]
) -> Screen | None:
    """The screen for subjects without overrides of their own, given the rules for their kind
    and each rule as it applies to their tier; None when such subjects must all be evaluated."""
    seconds = {w.name: w.seconds for w in policy.windows}
    checked = []
    for rule in rules:
        applied = effective(rule)
        if applied is None:  # disabled for this tier: it matches nobody
            continue
        checks = _checks(rule, applied.scale, seconds)
        if not checks:  # nothing cheap to test: every subject must be evaluated
            return None
        checked.append(checks)
    return Screen(tuple(checked))


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
