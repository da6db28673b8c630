"""The policy checker's rules section: each rule, its conditions, rate limit and ladder."""

from __future__ import annotations

import yaml

from enforcer.core.counts import Window
from enforcer.core.decisions import ACTION_RANK
from enforcer.core.subjects import COUNTED_KINDS, SUBJECT_KINDS
from enforcer.engine.detectors import SIGNALS
from enforcer.engine.policy.checks import (
    CONDITION_PATTERN,
    ESCALATION_KEYS,
    NAME_PATTERN,
    NAME_RULE,
    RATIO_SUFFIXES,
    RULE_ACTIONS,
    RULE_KEYS,
    NodeChecker,
    did_you_mean,
    line_of,
)
from enforcer.engine.policy.model import (
    DEFAULT_STRIKES_WITHIN_S,
    OPERATORS,
    Condition,
    EscalationStep,
    Rule,
)


class RuleChecks(NodeChecker):
    def rules(self, node: yaml.Node, windows: dict[str, Window]) -> dict[str, Rule]:
        out: dict[str, Rule] = {}
        first: dict[str, int] = {}
        for i, item in enumerate(self.sequence(node, "rules")):
            fields = self.mapping(item, f"rules[{i}]", RULE_KEYS)
            name_node = fields.get("name")
            rule = self.rule(item, fields, f"rules[{i}]", windows)
            if rule is None or name_node is None:
                continue
            if rule.name in first:
                self.error(
                    name_node,
                    f"rules[{i}].name",
                    f"duplicate rule name '{rule.name}' (first defined on line {first[rule.name]});"
                    " rule names must be unique",
                )
                continue
            first[rule.name] = line_of(name_node)
            out[rule.name] = rule
        return out

    def rule(
        self,
        node: yaml.Node,
        fields: dict[str, yaml.Node],
        field: str,
        windows: dict[str, Window],
    ) -> Rule | None:
        if not isinstance(node, yaml.MappingNode):
            return None
        before = len(self.issues)
        for required in ("name", "subject", "when", "action", "for"):
            if required not in fields:
                self.error(node, f"{field}.{required}", "is required")
        name = self.string(fields["name"], f"{field}.name") if "name" in fields else None
        if name is not None and not NAME_PATTERN.match(name):
            self.error(fields["name"], f"{field}.name", NAME_RULE)
        where = f"rules.{name}" if name else field
        subject = self.subject(fields["subject"], where) if "subject" in fields else None
        action = None
        if "action" in fields:
            action = self.string(fields["action"], f"{where}.action", RULE_ACTIONS)
        duration = self.duration(fields["for"], f"{where}.for") if "for" in fields else None
        limit = self.limit(node, fields, where, action, "this rule's")
        shadow = False
        if "shadow" in fields:
            shadow = bool(self.boolean(fields["shadow"], f"{where}.shadow"))
        description = ""
        if "description" in fields:
            description = self.string(fields["description"], f"{where}.description") or ""
        conditions = self.conditions(fields.get("when"), f"{where}.when", windows)
        escalate: tuple[EscalationStep, ...] = ()
        if "escalate" in fields and action is not None:
            escalate = self.escalation(fields["escalate"], f"{where}.escalate", action)
        strikes_within = DEFAULT_STRIKES_WITHIN_S
        if "strikes_within" in fields:
            strikes_within = (
                self.duration(fields["strikes_within"], f"{where}.strikes_within")
                or DEFAULT_STRIKES_WITHIN_S
            )
        if len(self.issues) > before or None in (name, subject, action, duration):
            return None
        assert name and subject and action and duration
        return Rule(
            name,
            subject,
            tuple(conditions),
            action,
            duration,
            limit,
            shadow,
            description,
            escalate,
            strikes_within,
        )

    def subject(self, node: yaml.Node, where: str) -> str | None:
        subject = self.string(node, f"{where}.subject", SUBJECT_KINDS)
        if subject is not None and subject not in COUNTED_KINDS:
            self.error(
                node,
                f"{where}.subject",
                f"{subject!r} is not counted per event, so a rule on it could never fire;"
                f" rules count one of {', '.join(COUNTED_KINDS)}",
            )
            return None
        return subject

    def limit(
        self,
        node: yaml.Node,
        fields: dict[str, yaml.Node],
        where: str,
        action: str | None,
        whose: str,
        inherited: float | None = None,
    ) -> float | None:
        """limit_rps, which a throttle needs and no other action may have."""
        if "limit_rps" in fields:
            limit = self.positive(fields["limit_rps"], f"{where}.limit_rps")
            if action is not None and action != "throttle":
                self.error(
                    fields["limit_rps"],
                    f"{where}.limit_rps",
                    f"only a throttle has a rate; {whose} action is {action}",
                )
            return limit
        if action == "throttle" and inherited is None:
            self.error(
                node,
                f"{where}.limit_rps",
                "a throttle needs limit_rps, the requests per second it lets through",
            )
        return None

    def conditions(
        self, node: yaml.Node | None, field: str, windows: dict[str, Window]
    ) -> list[Condition]:
        if node is None:
            return []
        out: list[Condition] = []
        items = self.sequence(node, field)
        if isinstance(node, yaml.SequenceNode) and not items:
            self.error(node, field, "a rule needs at least one condition, e.g. 'rps[1m] > 5'")
        # Lower and upper bounds per signal key: a rule whose conditions exclude each other
        # can never fire, which is a typo, not a policy.
        lower: dict[str, tuple[float, bool]] = {}
        upper: dict[str, tuple[float, bool]] = {}
        for j, item in enumerate(items):
            cond = self.condition(item, f"{field}[{j}]", windows)
            if cond is None:
                continue
            strict = cond.op in (">", "<")
            bounds = lower if cond.op in (">", ">=") else upper
            previous = bounds.get(cond.key)
            tighter = (
                previous is None
                or (cond.op.startswith(">") and cond.threshold >= previous[0])
                or (cond.op.startswith("<") and cond.threshold <= previous[0])
            )
            if tighter:
                bounds[cond.key] = (cond.threshold, strict)
            low, high = lower.get(cond.key), upper.get(cond.key)
            if low and high and (low[0] > high[0] or (low[0] == high[0] and (low[1] or high[1]))):
                self.error(
                    item,
                    f"{field}[{j}]",
                    f"'{cond.text}' contradicts another condition on {cond.key} in this rule:"
                    " no value meets both, so the rule can never fire",
                )
                continue
            out.append(cond)
        return out

    def condition(
        self, node: yaml.Node, field: str, windows: dict[str, Window]
    ) -> Condition | None:
        text = self.string(node, field)
        if text is None:
            return None
        match = CONDITION_PATTERN.match(text)
        if not match:
            self.error(
                node,
                field,
                f"'{text}' is not a condition; write 'signal[window] > number', e.g. 'rps[1m] > 5'"
                " (operators: >, >=, <, <=)",
            )
            return None
        signal, window = match.group("signal"), match.group("window")
        op, threshold = match.group("op"), float(match.group("threshold"))
        spec = SIGNALS.get(signal)
        listed = ", ".join(windows) or "none"
        if spec is None:
            known = ", ".join(sorted(SIGNALS))
            hint = did_you_mean(signal, SIGNALS)
            self.error(node, field, f"unknown signal '{signal}'{hint} (known: {known})")
            return None
        if spec.windowed and window is None:
            example = f"{signal}[{next(iter(windows), '1m')}]"
            self.error(node, field, f"'{signal}' is read over a window: write {example}")
            return None
        if not spec.windowed and window is not None:
            self.error(node, field, f"'{signal}' has no window: write it without [{window}]")
            return None
        if window is not None and window not in windows:
            hint = did_you_mean(window, windows)
            self.error(
                node,
                field,
                f"window '{window}' is not listed under windows{hint} (listed: {listed})",
            )
            return None
        ratio = signal.endswith(RATIO_SUFFIXES)
        high = 1.0 if ratio else None
        never = (
            (op == "<" and threshold <= 0)
            or (op == "<=" and threshold < 0)
            or (high is not None and op == ">" and threshold >= high)
            or (high is not None and op == ">=" and threshold > high)
        )
        if never:
            bound = "between 0 and 1" if ratio else "never negative"
            self.error(node, field, f"'{text.strip()}' can never be true: '{signal}' is {bound}")
            return None
        if op in (">", ">=") and threshold < 0 or (op == ">=" and threshold == 0):
            self.error(
                node,
                field,
                f"'{text.strip()}' is always true: '{signal}' is never negative;"
                " use a threshold that some traffic stays under",
            )
            return None
        assert op in OPERATORS
        return Condition(signal, window, op, threshold, text.strip())

    def escalation(
        self, node: yaml.Node, field: str, action: str, allow_empty: bool = False
    ) -> tuple[EscalationStep, ...]:
        """The ladder: steps by ascending `after`, each at least as strong as the one before.
        An override may set an empty ladder to switch escalation off for its selection."""
        steps: list[EscalationStep] = []
        items = self.sequence(node, field)
        if isinstance(node, yaml.SequenceNode) and not items and not allow_empty:
            self.error(
                node, field, "list at least one step, e.g. - {after: 2, action: block, for: 1h}"
            )
        previous_after, previous_action = 0, action
        for i, item in enumerate(items):
            where = f"{field}[{i}]"
            fields = self.mapping(item, where, ESCALATION_KEYS)
            if not isinstance(item, yaml.MappingNode):
                continue
            before = len(self.issues)
            for required in ("after", "action", "for"):
                if required not in fields:
                    self.error(item, f"{where}.{required}", "is required")
            after = None
            if "after" in fields:
                value = self.number(
                    fields["after"],
                    f"{where}.after",
                    lambda v: v >= 1 and v == int(v),
                    "a whole number >= 1",
                )
                if value is not None and value <= previous_after:
                    self.error(
                        fields["after"],
                        f"{where}.after",
                        f"steps count up: after must be more than {previous_after:g},"
                        " the step before",
                    )
                elif value is not None:
                    after = int(value)
            step_action = None
            if "action" in fields:
                step_action = self.string(fields["action"], f"{where}.action", RULE_ACTIONS)
                if (
                    step_action is not None
                    and ACTION_RANK[step_action] < ACTION_RANK[previous_action]
                ):
                    self.error(
                        fields["action"],
                        f"{where}.action",
                        f"an escalation never softens: {step_action} is weaker than"
                        f" {previous_action} (throttle < degrade < block)",
                    )
            duration = self.duration(fields["for"], f"{where}.for") if "for" in fields else None
            limit = self.limit(item, fields, where, step_action, "this step's")
            if (
                len(self.issues) > before
                or after is None
                or step_action is None
                or duration is None
            ):
                continue
            steps.append(EscalationStep(after, step_action, duration, limit))
            previous_after, previous_action = after, step_action
        return tuple(steps)

    # -- overrides --------------------------------------------------------------------------
