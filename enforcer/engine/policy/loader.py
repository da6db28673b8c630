"""Strict policy loading: every error names its file, line, column and field.

The YAML is composed into nodes (which keep their positions) and walked by hand rather than
loaded into dicts, so an unknown key, a wrong type or an impossible threshold can be reported
where the author typed it. All errors of a file are collected, not just the first, and each
says what would have been allowed.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_address, ip_network
from pathlib import Path
from typing import Any

import yaml

from enforcer.core.counts import Window
from enforcer.core.decisions import ACTION_RANK, ACTIONS, MODES
from enforcer.core.subjects import COUNTED_KINDS, SUBJECT_KINDS, TIERED_KINDS
from enforcer.engine.detectors import SIGNALS, BurstConfig
from enforcer.engine.policy.model import (
    DEFAULT_STRIKES_WITHIN_S,
    OPERATORS,
    AllowList,
    Condition,
    EscalationStep,
    Override,
    Policy,
    Rule,
    RuleChange,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CONDITION = re.compile(
    r"^\s*(?P<signal>[a-z_]+)\s*(?:\[\s*(?P<window>[^\]\s]+)\s*\])?\s*"
    r"(?P<op>>=|<=|>|<)\s*(?P<threshold>-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*$"
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_NAME_RULE = "use lower-case letters, digits, '.', '_' or '-' (at most 64)"

TOP_KEYS = (
    "name",
    "version",
    "mode",
    "fail_mode",
    "windows",
    "burst",
    "allow",
    "tiers",
    "rules",
    "overrides",
)
BURST_KEYS = ("short", "baseline", "floor_rps")
ALLOW_KEYS = ("api_keys", "accounts", "networks")
TIER_KEYS = ("scale",)
RULE_KEYS = (
    "name",
    "description",
    "subject",
    "when",
    "action",
    "limit_rps",
    "for",
    "shadow",
    "escalate",
    "strikes_within",
)
ESCALATION_KEYS = ("after", "action", "limit_rps", "for")
# An override is for one tier or one subject, named by its kind: `- api_key: k-123`.
OVERRIDE_SELECTORS = ("tier", *SUBJECT_KINDS)
OVERRIDE_KEYS = (*OVERRIDE_SELECTORS, "description", "scale", "disable", "rules")
RULE_CHANGE_KEYS = ("scale", "action", "limit_rps", "for", "shadow", "escalate")
# The pipeline knows the tier of api keys and accounts only: it comes with their events.
RULE_ACTIONS = tuple(a for a in ACTIONS if a != "allow")
# Signals that are shares or ratios: a threshold outside [0, 1] can never be met.
_RATIO_SUFFIXES = ("_share", "_ratio", "_regularity")


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.field}: {self.message}"


class PolicyError(ValueError):
    """A policy file was refused. `issues` holds every problem found, each with its position."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise PolicyError(
            [PolicyIssue(str(path), 0, 0, "(file)", f"cannot read: {reason}")]
        ) from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    checker = _Checker(source)
    policy = checker.policy(text)
    if checker.issues or policy is None:
        raise PolicyError(sorted(checker.issues, key=lambda i: (i.line, i.column)))
    return policy


def content_hash(text: str) -> str:
    """The hash a policy's version tag carries; the same text always gives the same hash."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_duration(text: str) -> float | None:
    match = _DURATION.match(text)
    if not match:
        return None
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _did_you_mean(value: str, choices: Iterable[str]) -> str:
    hint = difflib.get_close_matches(value, list(choices), n=1)
    return f"; did you mean '{hint[0]}'?" if hint else ""


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[PolicyIssue] = []
        self.declared_tiers: tuple[str, ...] = ()

    def error(self, node: yaml.Node | None, field: str, message: str) -> None:
        line = _line(node) if node is not None else 1
        column = node.start_mark.column + 1 if node is not None else 1
        self.issues.append(PolicyIssue(self.source, line, column, field, message))

    # -- structure helpers ---------------------------------------------------------------

    def mapping(
        self, node: yaml.Node, field: str, allowed: tuple[str, ...]
    ) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.error(
                node, field or "(file)", f"expected a mapping with keys {', '.join(allowed)}"
            )
            return {}
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{field}.{key}" if field else key
            if key not in allowed:
                hint = _did_you_mean(key, allowed)
                self.error(key_node, where, f"unknown key{hint} (allowed: {', '.join(allowed)})")
                continue
            if key in out:
                self.error(key_node, where, "duplicate key")
                continue
            out[key] = value_node
        return out

    def scalar(self, node: yaml.Node, field: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, field, "expected a single value, not a list or mapping")
            return None
        return yaml.safe_load(yaml.serialize(node))

    def string(self, node: yaml.Node, field: str, choices: tuple[str, ...] = ()) -> str | None:
        value = self.scalar(node, field)
        if value is None:
            if isinstance(node, yaml.ScalarNode):
                self.error(node, field, "expected a value, found nothing")
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.error(node, field, "expected a string")
            return None
        value = str(value)
        if choices and value not in choices:
            hint = _did_you_mean(value, choices)
            self.error(node, field, f"'{value}' is not one of {', '.join(choices)}{hint}")
            return None
        return value

    def number(
        self, node: yaml.Node, field: str, check: Callable[[float], bool], rule: str
    ) -> float | None:
        value = self.scalar(node, field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            if isinstance(node, yaml.ScalarNode):
                self.error(node, field, f"expected a number {rule}, got {node.value!r}")
            return None
        if not check(float(value)):
            self.error(node, field, f"{value} is out of range: must be {rule}")
            return None
        return float(value)

    def positive(self, node: yaml.Node, field: str) -> float | None:
        return self.number(node, field, lambda v: v > 0, "> 0")

    def boolean(self, node: yaml.Node, field: str) -> bool | None:
        value = self.scalar(node, field)
        if not isinstance(value, bool):
            if isinstance(node, yaml.ScalarNode):
                self.error(node, field, f"expected true or false, got {node.value!r}")
            return None
        return value

    def duration(self, node: yaml.Node, field: str) -> float | None:
        value = self.scalar(node, field)
        if not isinstance(node, yaml.ScalarNode):
            return None
        seconds = parse_duration(str(value)) if isinstance(value, str) else None
        if seconds is None or seconds <= 0:
            self.error(
                node, field, f"expected a duration such as 30s, 10m, 1h or 1d, got {node.value!r}"
            )
            return None
        return seconds

    def sequence(self, node: yaml.Node, field: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, field, "expected a list")
            return []
        return list(node.value)

    # -- the document -----------------------------------------------------------------------

    def policy(self, text: str) -> Policy | None:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else 1
            column = mark.column + 1 if mark else 1
            problem = getattr(exc, "problem", None) or str(exc)
            self.issues.append(
                PolicyIssue(self.source, line, column, "(yaml)", f"not valid YAML: {problem}")
            )
            return None
        if root is None:
            self.issues.append(PolicyIssue(self.source, 1, 1, "(file)", "the policy file is empty"))
            return None
        top = self.mapping(root, "", TOP_KEYS)
        if not isinstance(root, yaml.MappingNode):
            return None
        for required in ("name", "version", "windows", "rules"):
            if required not in top:
                self.error(root, required, "is required")

        name = self.string(top["name"], "name") if "name" in top else None
        if name is not None and not _NAME.match(name):
            self.error(top["name"], "name", _NAME_RULE)
        version = self.string(top["version"], "version") if "version" in top else None
        mode = self.string(top["mode"], "mode", MODES) if "mode" in top else "enforce"
        fail_mode = "open"
        if "fail_mode" in top:
            fail_mode = self.string(top["fail_mode"], "fail_mode", ("open", "closed")) or "open"
        windows = self.windows(top["windows"]) if "windows" in top else {}
        burst = self.burst(top.get("burst"), windows)
        allow = self.allow(top["allow"]) if "allow" in top else AllowList()
        tiers, tier_nodes = self.tiers(top["tiers"]) if "tiers" in top else ({}, {})
        self.declared_tiers = tuple(tiers)
        rules = self.rules(top["rules"], windows) if "rules" in top else {}
        tier_overrides: dict[str, Override] = {}
        subject_overrides: dict[tuple[str, str], Override] = {}
        if "overrides" in top:
            for override in self.overrides(top["overrides"], rules, tier_nodes):
                if override.selector == "tier":
                    tier_overrides[override.value] = override
                else:
                    subject_overrides[(override.selector, override.value)] = override

        if self.issues or None in (name, version, mode, burst):
            return None
        assert name is not None and version is not None and mode is not None and burst
        return Policy(
            name=name,
            version=version,
            content_hash=content_hash(text),
            mode=mode,
            fail_mode=fail_mode,
            windows=tuple(windows.values()),
            burst=burst,
            rules=tuple(rules.values()),
            allow=allow,
            tier_scale=tiers,
            source=self.source,
            tier_overrides=tier_overrides,
            subject_overrides=subject_overrides,
        )

    def windows(self, node: yaml.Node) -> dict[str, Window]:
        out: dict[str, Window] = {}
        items = self.sequence(node, "windows")
        if isinstance(node, yaml.SequenceNode) and not items:
            self.error(node, "windows", "list at least one window, such as [10s, 1m, 10m]")
        for i, item in enumerate(items):
            field = f"windows[{i}]"
            seconds = self.duration(item, field)
            if seconds is None:
                continue
            label = str(item.value).strip()
            if seconds != int(seconds):
                self.error(item, field, "windows are whole seconds")
            elif label in out:
                self.error(item, field, f"window {label} is listed twice")
            elif same := next((w.name for w in out.values() if w.seconds == seconds), None):
                # One length, two names would count the same traffic twice for no new signal.
                self.error(item, field, f"window {label} is as long as {same}, listed already")
            elif seconds > 86400:
                self.error(item, field, "windows longer than 1d are not supported")
            else:
                out[label] = Window.of(label, int(seconds))
        return out

    def burst(self, node: yaml.Node | None, windows: dict[str, Window]) -> BurstConfig | None:
        if not windows:
            return None
        ordered = sorted(windows.values(), key=lambda w: w.seconds)
        short, baseline, floor = ordered[0].name, ordered[-1].name, 0.5
        if node is None:
            return BurstConfig(short, baseline, floor)
        fields = self.mapping(node, "burst", BURST_KEYS)
        for key in ("short", "baseline"):
            if key not in fields:
                continue
            value = self.string(fields[key], f"burst.{key}")
            if value is not None and value not in windows:
                listed = ", ".join(windows)
                self.error(
                    fields[key], f"burst.{key}", f"'{value}' is not a listed window ({listed})"
                )
            elif value is not None:
                short, baseline = (value, baseline) if key == "short" else (short, value)
        if "floor_rps" in fields:
            floor = self.positive(fields["floor_rps"], "burst.floor_rps") or floor
        if windows[short].seconds >= windows[baseline].seconds:
            self.error(
                node,
                "burst",
                f"the short window ({short}) must be shorter than the baseline ({baseline})",
            )
        return BurstConfig(short, baseline, floor)

    def allow(self, node: yaml.Node) -> AllowList:
        fields = self.mapping(node, "allow", ALLOW_KEYS)
        lists: dict[str, list[str]] = {}
        networks = []
        for key, value_node in fields.items():
            lists[key] = []
            for i, item in enumerate(self.sequence(value_node, f"allow.{key}")):
                value = self.string(item, f"allow.{key}[{i}]")
                if value is None:
                    continue
                if key == "networks":
                    try:
                        networks.append(ip_network(value, strict=False))
                    except ValueError:
                        self.error(
                            item,
                            f"allow.networks[{i}]",
                            f"'{value}' is not a CIDR such as 10.0.0.0/8",
                        )
                    continue
                lists[key].append(value)
        return AllowList(
            frozenset(lists.get("api_keys", [])),
            frozenset(lists.get("accounts", [])),
            tuple(networks),
        )

    def tiers(self, node: yaml.Node) -> tuple[dict[str, float], dict[str, yaml.Node]]:
        """Tier name -> scale, and tier name -> the node of its `scale` (for conflicts)."""
        out: dict[str, float] = {}
        scale_nodes: dict[str, yaml.Node] = {}
        if not isinstance(node, yaml.MappingNode):
            self.error(
                node, "tiers", "expected a mapping of tier name to settings, e.g. enterprise:"
            )
            return out, scale_nodes
        for key_node, value_node in node.value:
            tier = str(key_node.value)
            out[tier] = 1.0
            fields = self.mapping(value_node, f"tiers.{tier}", TIER_KEYS)
            if "scale" in fields:
                scale_nodes[tier] = fields["scale"]
                out[tier] = self.positive(fields["scale"], f"tiers.{tier}.scale") or 1.0
        return out, scale_nodes

    # -- rules ------------------------------------------------------------------------------

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
            first[rule.name] = _line(name_node)
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
        if name is not None and not _NAME.match(name):
            self.error(fields["name"], f"{field}.name", _NAME_RULE)
        where = f"rules.{name}" if name else field
        subject = None
        if "subject" in fields:
            subject = self.string(fields["subject"], f"{where}.subject", SUBJECT_KINDS)
            if subject is not None and subject not in COUNTED_KINDS:
                self.error(
                    fields["subject"],
                    f"{where}.subject",
                    f"{subject!r} is not counted per event, so a rule on it could never fire;"
                    f" rules count one of {', '.join(COUNTED_KINDS)}",
                )
                subject = None
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
        match = _CONDITION.match(text)
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
            hint = _did_you_mean(signal, SIGNALS)
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
            hint = _did_you_mean(window, windows)
            self.error(
                node,
                field,
                f"window '{window}' is not listed under windows{hint} (listed: {listed})",
            )
            return None
        ratio = signal.endswith(_RATIO_SUFFIXES)
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
            first[selector] = _line(fields[override.selector])
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
                    f" {_line(tier_scales[value])}); set it in one place",
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
                hint = _did_you_mean(value, declared)
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
            hint = _did_you_mean(name, rules)
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
