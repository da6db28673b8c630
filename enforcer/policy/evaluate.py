"""Policy evaluation: a plain function from a subject's signals to at most one verdict per mode."""

from __future__ import annotations

from ipaddress import ip_network
from typing import NamedTuple

from enforcer.decisions import ACTION_RANK, Reason, Subject
from enforcer.detectors import SIGNALS
from enforcer.policy.model import OPERATORS, Policy, Rule


class Verdict(NamedTuple):
    rule: str
    action: str
    limit_rps: float | None
    duration_s: float
    mode: str
    reasons: tuple[Reason, ...]


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


def evaluate(
    policy: Policy, subject: Subject, signals: dict[str, float], tier: str | None = None
) -> list[Verdict]:
    """The strongest matching rule per mode (enforce, shadow); ties go to the earlier rule."""
    if is_allowed(policy, subject):
        return []
    scale = policy.tier_scale.get(tier, 1.0) if tier else 1.0
    best: dict[str, tuple[Rule, tuple[Reason, ...]]] = {}
    for rule in policy.rules:
        if rule.subject != subject.kind:
            continue
        reasons = _matches(rule, signals, scale)
        if reasons is None:
            continue
        mode = "shadow" if policy.mode == "shadow" or rule.shadow else "enforce"
        current = best.get(mode)
        if current is None or ACTION_RANK[rule.action] > ACTION_RANK[current[0].action]:
            best[mode] = (rule, reasons)
    return [
        Verdict(rule.name, rule.action, rule.limit_rps, rule.duration_s, mode, reasons)
        for mode, (rule, reasons) in best.items()
    ]


def _matches(rule: Rule, signals: dict[str, float], scale: float) -> tuple[Reason, ...] | None:
    reasons = []
    for cond in rule.when:
        value = signals.get(cond.key)
        if value is None:
            return None
        spec = SIGNALS[cond.signal]
        threshold = cond.threshold * scale if spec.volume else cond.threshold
        if not OPERATORS[cond.op](value, threshold):
            return None
        reasons.append(Reason(spec.detector, cond.signal, round(value, 4), threshold, cond.window))
    return tuple(reasons)
