"""What an edit changes in the policy file itself: rules, overrides, windows and the rest.

Compared on the parsed policies, not on the YAML text, so reordering keys, comments and quoting
are not changes, and a changed threshold reads as `rps[1m] > 6 -> rps[1m] > 4`, not as two
edited lines. A plain function of the two policies.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from enforcer.engine.policy.evaluate import format_duration
from enforcer.engine.policy.model import EscalationStep, Override, Policy, Rule, RuleChange


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: str
    new: str


@dataclass(frozen=True)
class ItemChange:
    """One rule or override that differs: `kind` is added, removed or changed."""

    name: str
    kind: str
    fields: tuple[FieldChange, ...] = ()

    def as_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "change": self.kind,
            "fields": [{"field": f.field, "old": f.old, "new": f.new} for f in self.fields],
        }


@dataclass(frozen=True)
class PolicyChanges:
    rules: tuple[ItemChange, ...]
    overrides: tuple[ItemChange, ...]
    windows_added: tuple[str, ...]
    windows_removed: tuple[str, ...]
    settings: tuple[FieldChange, ...]  # everything else: mode, burst, tiers, allow lists

    @property
    def edited_rules(self) -> frozenset[str]:
        return frozenset(c.name for c in self.rules)

    @property
    def empty(self) -> bool:
        return not (
            self.rules
            or self.overrides
            or self.windows_added
            or self.windows_removed
            or self.settings
        )

    def as_doc(self) -> dict[str, Any]:
        return {
            "rules": [c.as_doc() for c in self.rules],
            "overrides": [c.as_doc() for c in self.overrides],
            "windows": {"added": list(self.windows_added), "removed": list(self.windows_removed)},
            "settings": [{"field": f.field, "old": f.old, "new": f.new} for f in self.settings],
        }


# -- how each value reads --------------------------------------------------------------------


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _ladder(steps: tuple[EscalationStep, ...]) -> str:
    if not steps:
        return "none"
    return ", ".join(
        f"after {s.after}: {s.action}"
        + (f" {s.limit_rps:g} rps" if s.limit_rps is not None else "")
        + f" for {format_duration(s.duration_s)}"
        for s in steps
    )


def _rule_fields(rule: Rule) -> dict[str, str]:
    return {
        "subject": rule.subject,
        "action": rule.action,
        "limit_rps": _number(rule.limit_rps),
        "for": format_duration(rule.duration_s),
        "shadow": str(rule.shadow).lower(),
        "escalate": _ladder(rule.escalate),
        "strikes_within": format_duration(rule.strikes_within_s),
        "description": rule.description or "-",
    }


def _when_changes(old: Rule, new: Rule) -> list[FieldChange]:
    # Conditions paired by signal, window and direction, so a moved threshold is one change.
    def by_key(rule: Rule) -> dict[tuple[str, str], str]:
        return {(c.key, c.op.strip("=")): f"{c.key} {c.op} {c.threshold:g}" for c in rule.when}

    before, after = by_key(old), by_key(new)
    changes = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, "-"), after.get(key, "-")
        if a != b:
            changes.append(FieldChange("when", a, b))
    return changes


def _rule_change(old: Rule, new: Rule) -> ItemChange | None:
    before, after = _rule_fields(old), _rule_fields(new)
    changed = [FieldChange(k, before[k], after[k]) for k in before if before[k] != after[k]]
    changed = _when_changes(old, new) + changed
    return ItemChange(new.name, "changed", tuple(changed)) if changed else None


def _override_name(o: Override) -> str:
    return f"{o.selector} {o.value}"


def _rule_change_text(change: RuleChange | None) -> str:
    if change is None:
        return "-"
    parts = []
    for f in fields(RuleChange):
        value = getattr(change, f.name)
        if value is None:
            continue
        if f.name == "escalate":
            parts.append(f"escalate [{_ladder(value)}]")
        elif f.name == "duration_s":
            parts.append(f"for {format_duration(value)}")
        else:
            parts.append(f"{f.name} {value if isinstance(value, str) else _number(value)}")
    return ", ".join(parts) or "no change"


def _override_fields(o: Override) -> dict[str, str]:
    out = {"scale": _number(o.scale), "disable": ", ".join(sorted(o.disable)) or "-"}
    for rule, change in sorted(o.rules.items()):
        out[f"rules.{rule}"] = _rule_change_text(change)
    return out


def _override_change(old: Override, new: Override) -> ItemChange | None:
    before, after = _override_fields(old), _override_fields(new)
    changed = tuple(
        FieldChange(k, before.get(k, "-"), after.get(k, "-"))
        for k in sorted(set(before) | set(after))
        if before.get(k, "-") != after.get(k, "-")
    )
    return ItemChange(_override_name(new), "changed", changed) if changed else None


def _items(
    old: dict[str, Any], new: dict[str, Any], changed: Any, describe: Any
) -> tuple[ItemChange, ...]:
    out = []
    for name in list(old) + [n for n in new if n not in old]:
        if name not in new:
            out.append(ItemChange(name, "removed"))
        elif name not in old:
            out.append(ItemChange(name, "added", describe(new[name])))
        elif (change := changed(old[name], new[name])) is not None:
            out.append(change)
    return tuple(out)


def _as_added(values: dict[str, str]) -> tuple[FieldChange, ...]:
    return tuple(FieldChange(k, "-", v) for k, v in values.items())


def _settings(old: Policy, new: Policy) -> tuple[FieldChange, ...]:
    def flat(p: Policy) -> dict[str, str]:
        out = {
            "name": p.name,
            "mode": p.mode,
            "fail_mode": p.fail_mode,
            "burst": f"short {p.burst.short}, baseline {p.burst.baseline}, "
            f"floor_rps {p.burst.floor_rps:g}",
            "allow.api_keys": ", ".join(sorted(p.allow.api_keys)) or "-",
            "allow.accounts": ", ".join(sorted(p.allow.accounts)) or "-",
            "allow.networks": ", ".join(sorted(map(str, p.allow.networks))) or "-",
        }
        for tier, scale in sorted(p.tier_scale.items()):
            out[f"tiers.{tier}.scale"] = _number(scale)
        return out

    before, after = flat(old), flat(new)
    return tuple(
        FieldChange(k, before.get(k, "-"), after.get(k, "-"))
        for k in list(before) + [k for k in after if k not in before]
        if before.get(k, "-") != after.get(k, "-")
    )


def summarise(old: Policy, new: Policy) -> PolicyChanges:
    """Every difference between two policies that can change a decision, and descriptions."""

    def rule_added(rule: Rule) -> tuple[FieldChange, ...]:
        return tuple(FieldChange("when", "-", c.text) for c in rule.when) + _as_added(
            _rule_fields(rule)
        )

    def overrides(p: Policy) -> dict[str, Override]:
        every = [*p.tier_overrides.values(), *p.subject_overrides.values()]
        return {_override_name(o): o for o in every}

    old_windows = [w.name for w in old.windows]
    new_windows = [w.name for w in new.windows]
    return PolicyChanges(
        rules=_items(
            {r.name: r for r in old.rules}, {r.name: r for r in new.rules}, _rule_change, rule_added
        ),
        overrides=_items(
            overrides(old),
            overrides(new),
            _override_change,
            lambda o: _as_added(_override_fields(o)),
        ),
        windows_added=tuple(w for w in new_windows if w not in old_windows),
        windows_removed=tuple(w for w in old_windows if w not in new_windows),
        settings=_settings(old, new),
    )
