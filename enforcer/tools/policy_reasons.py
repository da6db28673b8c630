"""A decision's reasons as a policy author reads them: each threshold as written in the rule,
the scale applied to this subject, and where that scale came from.

A decision carries the threshold it was judged against, already scaled (`12` for an
`rps[1m] > 6` rule on a research-tier key with `scale: 2`). Printed bare, that number matches
nothing in the file and reads as a bug; printed as `> 6 x2 (tier research) = 12` it points at
the two lines that produced it. The scale's source is found the way the engine resolves it
(enforcer.engine.policy.evaluate), which needs the subject's tier: read from the replayed
events, once, and only when some reason was scaled.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from enforcer.core.decisions import Decision, Reason, Subject
from enforcer.engine.detectors import SIGNALS
from enforcer.engine.policy.evaluate import effective_rule, overrides_for
from enforcer.engine.policy.model import Condition, Override, Policy, Rule


class ExplainedReason(NamedTuple):
    signal: str
    window: str | None
    op: str
    value: float
    threshold: float  # what the subject was judged against
    written: float  # the rule's threshold as written
    scale: float
    scale_from: str | None  # "tier research", "override api_key k-1", ...
    escalation: bool = False

    @property
    def name(self) -> str:
        return f"{self.signal}[{self.window}]" if self.window else self.signal

    def text(self) -> str:
        if self.escalation:
            return f"{self.value:g} strikes within {self.window} (step at {self.threshold:g})"
        rule = f"{self.op} {self.written:g}"
        if self.scale != 1.0:
            source = f" ({self.scale_from})" if self.scale_from else ""
            rule += f" x{self.scale:g}{source} = {self.threshold:g}"
        return f"{self.name} {self.value:.4g}, threshold {rule}"

    def as_doc(self) -> dict[str, Any]:
        return {**self._asdict(), "text": self.text()}


class TierBook:
    """Each api_key's and account's tier as the events last named it, read on first use."""

    def __init__(self, events_path: Path) -> None:
        self.events_path = events_path
        self._tiers: dict[tuple[str, str], str] | None = None

    def tier_of(self, subject: Subject) -> str | None:
        if subject.kind not in ("api_key", "account"):
            return None
        if self._tiers is None:
            self._tiers = _read_tiers(self.events_path)
        return self._tiers.get((subject.kind, subject.value))


def _read_tiers(path: Path) -> dict[tuple[str, str], str]:
    tiers: dict[tuple[str, str], str] = {}
    with path.open("rb") as fh:
        for line in fh:
            if b'"tier"' not in line:
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the backtest already counted it as a bad line
            tier = doc.get("tier") if isinstance(doc, dict) else None
            if not isinstance(tier, str):
                continue
            for kind, field in (("api_key", "api_key"), ("account", "account_id")):
                value = doc.get(field)
                if isinstance(value, str):
                    tiers[(kind, value)] = tier
    return tiers


def _source(override: Override) -> str:
    if override.selector == "tier":
        return f"tier {override.value} override"
    return f"override {override.selector} {override.value}"


def scale_source(policy: Policy, rule: Rule, subject: Subject, tier: str | None) -> str | None:
    """Which line of the policy set the scale the engine applied to this rule and subject."""
    for o in overrides_for(policy, subject, tier):
        change = o.rules.get(rule.name)
        if change is not None and change.scale is not None:
            return f"{_source(o)}, rules.{rule.name}"
        if o.scale is not None:
            return _source(o)
    if tier is not None and tier in policy.tier_scale:
        return f"tier {tier}"
    return None


def _condition(rule: Rule, reason: Reason, scale: float) -> Condition | None:
    candidates = [c for c in rule.when if c.signal == reason.signal and c.window == reason.window]
    for c in candidates:
        if (
            abs(c.threshold * (scale if SIGNALS[c.signal].volume else 1.0) - reason.threshold)
            < 1e-9
        ):
            return c
    return candidates[0] if candidates else None


def explain_reasons(
    decision: Decision, policy: Policy, tiers: TierBook
) -> tuple[ExplainedReason, ...]:
    """The decision's reasons against the rule as written in `policy` (the one that decided)."""
    rule = next((r for r in policy.rules if r.name == decision.rule), None)
    out = []
    for r in decision.reasons:
        if r.detector == "escalation" or rule is None:
            out.append(
                ExplainedReason(
                    r.signal, r.window, ">=", r.value, r.threshold, r.threshold, 1.0, None,
                    r.detector == "escalation",
                )
            )  # fmt: skip
            continue
        scale, source = 1.0, None
        volume = r.signal in SIGNALS and SIGNALS[r.signal].volume
        if volume:
            plain = _condition(rule, r, 1.0)
            if plain is None or abs(plain.threshold - r.threshold) > 1e-9:
                tier = tiers.tier_of(decision.subject)
                applied = effective_rule(
                    policy, rule, overrides_for(policy, decision.subject, tier), tier
                )
                if applied is not None:
                    scale = applied.scale
                    source = scale_source(policy, rule, decision.subject, tier)
        cond = _condition(rule, r, scale)
        written = cond.threshold if cond is not None else r.threshold
        if cond is not None and scale != 1.0 and abs(written * scale - r.threshold) > 1e-9:
            # The tier in the events changed since this decision: say what is known.
            scale, source = r.threshold / written if written else 1.0, None
        out.append(
            ExplainedReason(
                r.signal,
                r.window,
                cond.op if cond is not None else "?",
                r.value,
                r.threshold,
                written,
                scale,
                source,
            )
        )
    return tuple(out)


def explain(decision: Decision, reasons: Iterable[ExplainedReason]) -> str:
    """`action by rule: reason; reason`: why a decision was taken."""
    return f"{decision.action} by {decision.rule}: " + "; ".join(r.text() for r in reasons)
