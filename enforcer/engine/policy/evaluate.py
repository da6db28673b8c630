"""How a rule applies to one subject: overrides resolved, conditions matched, ladders built.

Overrides are resolved here, most specific first: a subject's own override, then its tier's
override, then the tier's `scale`, then the rule as written. Within one override a change to a
single rule beats a change to every rule. An allow-listed subject is never acted on.
enforcer.engine.policy.compiled puts these together, once per policy.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_network
from typing import NamedTuple

from enforcer.core.counts import LadderStep
from enforcer.core.decisions import ACTION_RANK, Decision, Reason, Subject
from enforcer.engine.detectors import SIGNALS
from enforcer.engine.policy.model import (
    DEFAULT_STRIKES_WITHIN_S,
    EscalationStep,
    Override,
    Policy,
    Rule,
)


class Verdict(NamedTuple):
    rule: str
    action: str
    limit_rps: float | None
    duration_s: float
    mode: str
    reasons: tuple[Reason, ...]
    # The rule's ladder for repeat offenders; decide.lua picks the step from the strike count.
    escalate: tuple[EscalationStep, ...] = ()
    strikes_within_s: float = DEFAULT_STRIKES_WITHIN_S


class Effective(NamedTuple):
    """A rule as it applies to one subject, after overrides."""

    rule: Rule
    action: str
    limit_rps: float | None
    duration_s: float
    shadow: bool
    scale: float
    escalate: tuple[EscalationStep, ...]


def is_allowed(policy: Policy, subject: Subject) -> bool:
    """Allow-listed subjects are never acted on, whatever rule matches."""
    allow = policy.allow
    if subject.kind == "api_key":
        return subject.value in allow.api_keys
    if subject.kind == "account":
        return subject.value in allow.accounts
    if subject.kind in ("network", "ip") and allow.networks:
        try:
            net = ip_network(subject.value, strict=False)
        except ValueError:
            return False
        return any(net.version == a.version and net.subnet_of(a) for a in allow.networks)  # type: ignore[arg-type]
    return False


def overrides_for(policy: Policy, subject: Subject, tier: str | None) -> tuple[Override, ...]:
    """The overrides that reach a subject, most specific first."""
    found = []
    own = policy.subject_overrides.get((subject.kind, subject.value))
    if own is not None:
        found.append(own)
    if tier is not None and tier in policy.tier_overrides:
        found.append(policy.tier_overrides[tier])
    return tuple(found)


def effective_rule(
    policy: Policy, rule: Rule, overrides: tuple[Override, ...], tier: str | None
) -> Effective | None:
    """The rule after overrides, or None when an override disables it for this subject."""
    if any(rule.name in o.disable for o in overrides):
        return None
    changes = [c for o in overrides if (c := o.rules.get(rule.name)) is not None]
    scale = None
    for o in overrides:  # subject before tier; within one, the rule's own change first
        change = o.rules.get(rule.name)
        scale = change.scale if change is not None and change.scale is not None else o.scale
        if scale is not None:
            break
    if scale is None:
        scale = policy.tier_scale.get(tier, 1.0) if tier else 1.0
    action = next((c.action for c in changes if c.action is not None), rule.action)
    limit = next((c.limit_rps for c in changes if c.limit_rps is not None), rule.limit_rps)
    duration = next((c.duration_s for c in changes if c.duration_s is not None), rule.duration_s)
    shadow = next((c.shadow for c in changes if c.shadow is not None), rule.shadow)
    escalate = next((c.escalate for c in changes if c.escalate is not None), rule.escalate)
    # A ladder never softens: steps weaker than an overridden action are dropped.
    ladder = tuple(s for s in escalate if ACTION_RANK[s.action] >= ACTION_RANK[action])
    return Effective(
        rule,
        action,
        limit if action == "throttle" else None,
        duration,
        shadow,
        scale,
        ladder,
    )


def matches(rule: Rule, signals: dict[str, float], scale: float) -> tuple[Reason, ...] | None:
    # Nearly every evaluation fails a condition: the reasons are built only for a match.
    get = signals.get
    for cond in rule.when:
        value = get(cond.key)
        if value is None:
            return None
        if not cond.holds(value, cond.threshold * scale if cond.scaled else cond.threshold):
            return None
    reasons = []
    for cond in rule.when:
        spec = SIGNALS[cond.signal]
        threshold = cond.threshold * scale if spec.volume else cond.threshold
        value = signals[cond.key]
        reasons.append(Reason(spec.detector, cond.signal, round(value, 4), threshold, cond.window))
    return tuple(reasons)


def ladder_of(verdict: Verdict, ts: float) -> tuple[LadderStep, ...]:
    """The verdict's escalation steps as the window store takes them: expiry from `ts`."""
    return tuple(
        LadderStep(s.after, s.action, ACTION_RANK[s.action], ts + s.duration_s)
        for s in verdict.escalate
    )


def escalated(decision: Decision, verdict: Verdict, step: int, strikes: int) -> Decision:
    """The decision with the ladder step decide.lua chose (0: the rule's own action).

    The strike count joins the reasons, so an escalated decision explains itself."""
    if step == 0:
        return decision
    chosen = verdict.escalate[step - 1]
    return replace(
        decision,
        action=chosen.action,
        limit_rps=chosen.limit_rps,
        expires_at=decision.ts + chosen.duration_s,
        reasons=(
            *decision.reasons,
            Reason(
                "escalation",
                "strikes",
                float(strikes),
                float(chosen.after),
                format_duration(verdict.strikes_within_s),
            ),
        ),
    )


def format_duration(seconds: float) -> str:
    """The shortest policy-file spelling of a duration: 86400 -> 1d, 90 -> 90s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
