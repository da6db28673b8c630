"""The policy checker's overrides section: per tier or per subject, scales, disabled rules and
rule changes."""

from __future__ import annotations

from ipaddress import IPv4Network, ip_address, ip_network

import yaml

from enforcer.core.subjects import TIERED_KINDS
from enforcer.engine.policy.checks import (
    OVERRIDE_KEYS,
    OVERRIDE_SELECTORS,
    RULE_ACTIONS,
    RULE_CHANGE_KEYS,
    did_you_mean,
    line_of,
)
from enforcer.engine.policy.model import (
    Override,
    Rule,
    RuleChange,
)
from enforcer.engine.policy.rule_checks import RuleChecks


class OverrideChecks(RuleChecks):
    def overrides(
        self, node: yaml.Node, rules: dict[str, Rule], tier_scales: dict[str, yaml.Node]
    ) -> list[Override]:
        out: list[Override] = []
        first: dict[tuple[str, str], int] = {}
        for i, item in enumerate(self.sequence(node, "overrides")):
            fields = self.mapping(item, f"overrides[{i}]", OVERRIDE_KEYS)
            if not isinstance(item, yaml.MappingNode):
                continue
            override = self.override(item, fields, f"overrides[{i}]", rules, tier_scales)
            if override is None:
                continue
            selector = (override.selector, override.value)
            if selector in first:
                self.error(
                    fields[override.selector],
                    f"overrides[{i}].{override.selector}",
                    f"a second override for {override.selector} {override.value} (first on line"
                    f" {first[selector]}); put all its changes in one",
                )
                continue
            first[selector] = line_of(fields[override.selector])
            out.append(override)
        return out

    def override(
        self,
        node: yaml.Node,
        fields: dict[str, yaml.Node],
        field: str,
        rules: dict[str, Rule],
        tier_scales: dict[str, yaml.Node],
    ) -> Override | None:
        before = len(self.issues)
        chosen = [k for k in OVERRIDE_SELECTORS if k in fields]
        if not chosen:
            self.error(
                node,
                field,
                "say who the override is for: one of "
                + ", ".join(f"{k}: <value>" for k in OVERRIDE_SELECTORS),
            )
            return None
        if len(chosen) > 1:
            self.error(
                fields[chosen[1]],
                f"{field}.{chosen[1]}",
                f"an override is for one tier or one subject; this one also names {chosen[0]}",
            )
            return None
        selector = chosen[0]
        value = self.selector_value(fields[selector], f"{field}.{selector}", selector, tier_scales)
        if value is None:
            return None
        where = f"overrides[{selector}={value}]"
        kinds = TIERED_KINDS if selector == "tier" else (selector,)
        if "description" in fields:
            self.string(fields["description"], f"{where}.description")
        scale = None
        if "scale" in fields:
            scale = self.positive(fields["scale"], f"{where}.scale")
            if selector == "tier" and value in tier_scales:
                self.error(
                    fields["scale"],
                    f"{where}.scale",
                    f"tiers.{value}.scale already sets this tier's scale (line"
                    f" {line_of(tier_scales[value])}); set it in one place",
                )
        disable: set[str] = set()
        if "disable" in fields:
            for j, item in enumerate(self.sequence(fields["disable"], f"{where}.disable")):
                name = self.string(item, f"{where}.disable[{j}]")
                if name is not None and self.known_rule(
                    item, f"{where}.disable[{j}]", name, rules, kinds
                ):
                    disable.add(name)
        changes: dict[str, RuleChange] = {}
        if "rules" in fields:
            changes = self.rule_changes(fields["rules"], f"{where}.rules", rules, kinds)
        if len(self.issues) > before:
            return None
        return Override(selector, value, scale, frozenset(disable), changes)

    def selector_value(
        self, node: yaml.Node, field: str, selector: str, tier_scales: dict[str, yaml.Node]
    ) -> str | None:
        value = self.string(node, field)
        if value is None:
            return None
        if selector == "tier":
            declared = self.declared_tiers
            if value not in declared:
                known = ", ".join(declared) if declared else "none are declared under tiers"
                hint = did_you_mean(value, declared)
                self.error(node, field, f"unknown tier '{value}'{hint} (tiers: {known})")
                return None
            return value
        try:
            if selector == "ip":
                return str(ip_address(value))
            if selector == "network":
                net = ip_network(value, strict=False)
                size = 24 if isinstance(net, IPv4Network) else 48
                if net.prefixlen != size:
                    self.error(
                        node,
                        field,
                        f"network subjects are /24 (IPv4) or /48 (IPv6) networks; {value} is"
                        f" /{net.prefixlen}",
                    )
                    return None
                return str(net)
        except ValueError:
            self.error(node, field, f"'{value}' is not an {selector} address")
            return None
        if selector == "asn" and not value.isdigit():
            self.error(node, field, f"'{value}' is not an AS number such as 64500")
            return None
        return value

    def known_rule(
        self,
        node: yaml.Node,
        field: str,
        name: str,
        rules: dict[str, Rule],
        kinds: tuple[str, ...],
    ) -> bool:
        rule = rules.get(name)
        if rule is None:
            hint = did_you_mean(name, rules)
            known = ", ".join(rules) or "none"
            self.error(node, field, f"unknown rule '{name}'{hint} (rules: {known})")
            return False
        if rule.subject not in kinds:
            self.error(
                node,
                field,
                f"rule '{name}' acts on {rule.subject} subjects; this override only reaches"
                f" {' and '.join(kinds)} subjects",
            )
            return False
        return True

    def rule_changes(
        self,
        node: yaml.Node,
        field: str,
        rules: dict[str, Rule],
        kinds: tuple[str, ...],
    ) -> dict[str, RuleChange]:
        out: dict[str, RuleChange] = {}
        if not isinstance(node, yaml.MappingNode):
            self.error(node, field, "expected a mapping of rule name to changes, e.g. key-flood:")
            return out
        for key_node, value_node in node.value:
            name = str(key_node.value)
            where = f"{field}.{name}"
            if not self.known_rule(key_node, where, name, rules, kinds):
                continue
            rule = rules[name]
            fields = self.mapping(value_node, where, RULE_CHANGE_KEYS)
            if not isinstance(value_node, yaml.MappingNode):
                continue
            before = len(self.issues)
            scale = self.positive(fields["scale"], f"{where}.scale") if "scale" in fields else None
            action = None
            if "action" in fields:
                action = self.string(fields["action"], f"{where}.action", RULE_ACTIONS)
            effective = action or rule.action
            inherited = rule.limit_rps if effective == "throttle" else None
            limit = self.limit(value_node, fields, where, effective, "the rule's", inherited)
            duration = self.duration(fields["for"], f"{where}.for") if "for" in fields else None
            shadow = (
                self.boolean(fields["shadow"], f"{where}.shadow") if "shadow" in fields else None
            )
            escalate = None
            if "escalate" in fields:
                escalate = self.escalation(
                    fields["escalate"], f"{where}.escalate", effective, allow_empty=True
                )
            if len(self.issues) == before:
                out[name] = RuleChange(scale, action, limit, duration, shadow, escalate)
        return out
