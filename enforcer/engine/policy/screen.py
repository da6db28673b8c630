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

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from enforcer.core.counts import CampaignStats, SumsLayout, WindowStats
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


# A check compiled against one layout of window sums: (op, a, b, threshold). _REQUESTS: the
# request count row[a] >= threshold; _CAMPAIGN: the largest campaign's size a (an index into
# _CAMPAIGNS) >= threshold; _SHARE: counter row[b] is at least threshold of the requests row[a]
# (b is -1 for a counter the store does not keep). _ANY leads a rule with neither a request
# count nor a campaign to test first.
_REQUESTS, _CAMPAIGN, _SHARE, _ANY = 0, 1, 2, 3
# Layouts are shared by every subject of a shape (see the codec's decode); a screen keeps its
# compiled form for this many of them.
_LAYOUTS_KEPT = 64
# A subject without campaigns has no campaign signal: it fails every campaign condition.
_NO_CAMPAIGN = (-math.inf, -math.inf, -math.inf)

_Check = tuple[int, int, int, float]
# Rules led by the same value (a request count at one row index, or one campaign size): per
# rule its lead threshold, ascending, and the checks left. A subject under one rule's lead is
# under every later one's in the group.
_Led = tuple[int, int, tuple[tuple[float, tuple[_Check, ...]], ...]]


class Screen:
    """Per rule its checks; a subject may match the rule only if it passes them all."""

    __slots__ = ("rules", "_by_layout")

    def __init__(self, rules: tuple[tuple[Check, ...], ...]) -> None:
        self.rules = rules
        self._by_layout: dict[SumsLayout, tuple[_Led, ...]] = {}

    def __repr__(self) -> str:
        return f"Screen(rules={self.rules!r})"

    def clears(self, stats: WindowStats, campaigns: Sequence[CampaignStats]) -> bool:
        """False only when no rule of the screen can match the subject."""
        # Run per subject and batch, two subjects per event at 10^4 active keys and more: the
        # checks are compiled per layout to row indexes, and rules led by the same value are
        # sorted by their floor, so most subjects are turned away by one comparison per value.
        groups = self._by_layout.get(stats.layout)
        if groups is None:
            groups = self._compile(stats.layout)
        row = stats.row
        tops = _largest(campaigns) if campaigns else _NO_CAMPAIGN
        for op, a, led in groups:
            if op == _REQUESTS:
                value = row[a]
            elif op == _CAMPAIGN:
                value = tops[a]
            else:
                value = math.inf
            for floor, rest in led:
                if value < floor:
                    break
                if not rest or _passes(rest, row, tops):
                    return True
        return False

    def _compile(self, layout: SumsLayout) -> tuple[_Led, ...]:
        groups: dict[tuple[int, int], list[tuple[float, tuple[_Check, ...]]]] = {}
        for checks in self.rules:
            compiled = _compiled(checks, layout)
            if compiled is None:
                continue  # a condition reads a window the subject does not keep: no match
            # All of a rule's checks must pass, so their order is free: a request count leads,
            # else a campaign size, else a lead that every subject passes.
            compiled.sort(key=lambda c: c[0])
            if not compiled or compiled[0][0] == _SHARE:
                compiled.insert(0, (_ANY, -1, -1, 0.0))
            op, a, _, floor = compiled[0]
            groups.setdefault((op, a), []).append((floor, tuple(compiled[1:])))
        found = tuple((op, a, tuple(sorted(led))) for (op, a), led in groups.items())
        if len(self._by_layout) >= _LAYOUTS_KEPT:
            self._by_layout.clear()
        self._by_layout[layout] = found
        return found


def _compiled(checks: tuple[Check, ...], layout: SumsLayout) -> list[_Check] | None:
    """A rule's checks against a layout's row indexes; None when the rule reads a window the
    layout does not keep, so that its signal is absent."""
    offsets = layout.offsets
    columns = layout.columns(_COUNTERS)
    compiled: list[_Check] = []
    for kind, window, slot, threshold in checks:
        if kind == "campaign":
            compiled.append((_CAMPAIGN, slot, -1, threshold))
            continue
        at = offsets.get(window)  # type: ignore[arg-type]
        if at is None:
            return None
        if columns[_REQ] < 0:  # the store keeps "req" always; were it not, check nothing
            return []
        req_at = at + columns[_REQ]
        if kind == "requests":
            compiled.append((_REQUESTS, req_at, -1, threshold))
        else:
            part_at = at + columns[slot] if columns[slot] >= 0 else -1
            compiled.append((_SHARE, req_at, part_at, threshold))
    return compiled


def _passes(checks: tuple[_Check, ...], row: tuple[float, ...], tops: tuple[float, ...]) -> bool:
    for op, a, b, threshold in checks:
        if op == _REQUESTS:
            if row[a] < threshold:
                return False
        elif op == _CAMPAIGN:
            if tops[a] < threshold:
                return False
        else:
            req = row[a]
            part = row[b] if b >= 0 else 0.0
            if req <= 0.0:  # an empty window's share is 0
                if threshold > 0.0:
                    return False
            elif part < threshold * req - _SLACK * max(1.0, req):
                return False
    return True


def _largest(campaigns: Sequence[CampaignStats]) -> tuple[float, float, float]:
    """The largest campaign's keys, networks and accounts among a subject's templates."""
    if len(campaigns) == 1:
        _, keys, networks, accounts = campaigns[0]
        return keys, networks, accounts
    keys = networks = accounts = 0
    for _, k, n, a in campaigns:
        keys = k if k > keys else keys
        networks = n if n > networks else networks
        accounts = a if a > accounts else accounts
    return keys, networks, accounts


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
