"""A policy compiled for the event path: everything derived from it, built once per load.

The worker swaps the compiled policy whole on reload (PolicyHolder), so a batch sees one policy
throughout and nothing derived from an older one survives it: what to count (the tracking
plan), each kind's rules, each rule as it applies to a tier, and each tier's screen.
"""

from __future__ import annotations

from typing import NamedTuple

from enforcer.core.counts import GAP_COUNTERS
from enforcer.core.decisions import ACTION_RANK, Reason, Subject
from enforcer.core.subjects import COUNTED_KINDS, TEMPLATE_SHARE_KINDS
from enforcer.engine.detectors import SIGNALS
from enforcer.engine.features.request import COUNTERS, Sketches
from enforcer.engine.policy.evaluate import (
    Effective,
    Verdict,
    effective_rule,
    is_allowed,
    matches,
    overrides_for,
)
from enforcer.engine.policy.model import Policy, Rule
from enforcer.engine.policy.screen import Screen, build_screen

TEMPLATE_SIGNALS = frozenset({"template_share", "near_duplicate_share", "distinct_template_ratio"})
# Tiers come from events; past this many distinct ones, a tier's rules are resolved per call.
_TIERS_KEPT = 256


class TrackingPlan(NamedTuple):
    """What the policy needs counted: which subject kinds, over which windows, and whether
    template shares and campaigns are read. Counting nothing a rule cannot read keeps Redis
    work per event proportional to the policy, as rate limiters count only configured
    descriptors. A reload that adds a rule on a new subject kind starts its windows empty."""

    windows: dict[str, tuple[str, ...]]  # subject kind -> names of the windows it keeps
    template_shares: bool
    campaigns: bool  # links keys by exact template or system prompt (campaign_* signals)
    reworded: bool  # links keys by reworded clauses (paraphrase_* signals)
    kinds: tuple[str, ...]  # the kinds of an event's subjects that are counted, in event order
    columns: tuple[str, ...]  # the counters kept per bucket (see WindowStore.update)
    # Per window name, the counters its buckets keep: those a rule reads in that window, and
    # "req". Every bucket of every active subject would otherwise hold all of `columns`.
    window_columns: dict[str, tuple[str, ...]]

    @property
    def sketches(self) -> Sketches:
        """The MinHash sketches a request's features need under this plan."""
        return (Sketches.BANDS if self.template_shares else Sketches.NONE) | (
            Sketches.REWORDED if self.reworded else Sketches.NONE
        )


def tracking_plan(policy: Policy) -> TrackingPlan:
    # api_key is always counted: it is the gateway's own subject and the event accounting's.
    used: dict[str, set[str]] = {"api_key": set()}
    template_shares = campaigns = reworded = False
    columns = {"req"}
    read_in: dict[str, set[str]] = {w.name: {"req"} for w in policy.windows}
    for rule in policy.rules:
        windows = used.setdefault(rule.subject, set())
        for cond in rule.when:
            counters = SIGNALS[cond.signal].counters
            columns.update(counters)
            if cond.window:
                windows.add(cond.window)
                read_in.setdefault(cond.window, {"req"}).update(counters)
            if cond.signal == "burst":
                windows.update((policy.burst.short, policy.burst.baseline))
                for window in (policy.burst.short, policy.burst.baseline):
                    read_in.setdefault(window, {"req"}).update(counters)
            template_shares |= (
                cond.signal in TEMPLATE_SIGNALS and rule.subject in TEMPLATE_SHARE_KINDS
            )
            campaigns |= cond.signal.startswith("campaign_")
            reworded |= cond.signal.startswith("paraphrase_")
    order = [w.name for w in policy.windows]
    every = (*COUNTERS, *GAP_COUNTERS)
    return TrackingPlan(
        {kind: tuple(n for n in order if n in names) for kind, names in used.items()},
        template_shares,
        campaigns,
        reworded,
        tuple(k for k in COUNTED_KINDS if k in used),
        tuple(c for c in every if c in columns),
        {window: tuple(c for c in every if c in read) for window, read in read_in.items()},
    )


class CompiledPolicy:
    __slots__ = ("policy", "plan", "_rules", "_effective", "_screens")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.plan = tracking_plan(policy)
        self._rules = {k: tuple(r for r in policy.rules if r.subject == k) for k in COUNTED_KINDS}
        # Most subjects have no override of their own: their rules depend only on the tier.
        self._effective: dict[tuple[str, str | None], Effective | None] = {}
        self._screens: dict[tuple[str, str | None], Screen | None] = {}

    def rules_for(self, kind: str) -> tuple[Rule, ...]:
        return self._rules.get(kind, ())

    def effective(self, rule: Rule, tier: str | None) -> Effective | None:
        """The rule as it applies to subjects of a tier without overrides of their own."""
        key = (rule.name, tier)
        if key in self._effective:
            return self._effective[key]
        policy = self.policy
        tier_override = policy.tier_overrides.get(tier) if tier is not None else None
        found = effective_rule(policy, rule, (tier_override,) if tier_override else (), tier)
        if len(self._effective) < _TIERS_KEPT * max(1, len(policy.rules)):
            self._effective[key] = found
        return found

    def screen(self, kind: str, tier: str | None) -> Screen | None:
        """The screen for subjects of a kind and tier without overrides of their own (see
        enforcer.engine.policy.screen); None when they must all be evaluated."""
        key = (kind, tier)
        if key in self._screens:
            return self._screens[key]
        found = build_screen(self.policy, self.rules_for(kind), lambda r: self.effective(r, tier))
        if len(self._screens) < _TIERS_KEPT * len(COUNTED_KINDS):
            self._screens[key] = found
        return found

    def evaluate(
        self, subject: Subject, signals: dict[str, float], tier: str | None = None
    ) -> list[Verdict]:
        """The strongest matching rule per mode (enforce, shadow); ties go to the earlier rule."""
        policy = self.policy
        if is_allowed(policy, subject):
            return []
        own = (subject.kind, subject.value) in policy.subject_overrides
        overrides = overrides_for(policy, subject, tier) if own else ()
        best: dict[str, tuple[Effective, tuple[Reason, ...]]] = {}
        for rule in self.rules_for(subject.kind):
            if own:
                applied = effective_rule(policy, rule, overrides, tier)
            else:
                applied = self.effective(rule, tier)
            if applied is None:
                continue
            reasons = matches(rule, signals, applied.scale)
            if reasons is None:
                continue
            mode = "shadow" if policy.mode == "shadow" or applied.shadow else "enforce"
            current = best.get(mode)
            if current is None or ACTION_RANK[applied.action] > ACTION_RANK[current[0].action]:
                best[mode] = (applied, reasons)
        return [
            Verdict(
                applied.rule.name,
                applied.action,
                applied.limit_rps,
                applied.duration_s,
                mode,
                reasons,
                applied.escalate,
                applied.rule.strikes_within_s,
            )
            for mode, (applied, reasons) in best.items()
        ]
