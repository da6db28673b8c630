"""Strict policy loading: every error names its file, line, column and field.

The YAML is composed into nodes (which keep their positions) and walked by hand rather than
loaded into dicts, so an unknown key, a wrong type or an impossible threshold can be reported
where the author typed it. All errors of a file are collected, not just the first.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import yaml

from enforcer.decisions import ACTIONS, MODES, SUBJECT_KINDS
from enforcer.detectors import SIGNALS, BurstConfig
from enforcer.policy.model import OPERATORS, AllowList, Condition, Policy, Rule
from enforcer.windows.store import Window

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CONDITION = re.compile(
    r"^\s*(?P<signal>[a-z_]+)\s*(?:\[\s*(?P<window>[^\]\s]+)\s*\])?\s*"
    r"(?P<op>>=|<=|>|<)\s*(?P<threshold>-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*$"
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

TOP_KEYS = ("name", "version", "mode", "fail_mode", "windows", "burst", "allow", "tiers", "rules")
BURST_KEYS = ("short", "baseline", "floor_rps")
ALLOW_KEYS = ("api_keys", "accounts", "networks")
TIER_KEYS = ("scale",)
RULE_KEYS = ("name", "description", "subject", "when", "action", "limit_rps", "for", "shadow")
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
    except OSError as exc:
        raise PolicyError([PolicyIssue(str(path), 0, 0, "(file)", f"cannot read: {exc.strerror}")]) from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    checker = _Checker(source)
    policy = checker.policy(text)
    if checker.issues or policy is None:
        raise PolicyError(checker.issues)
    return policy


def parse_duration(text: str) -> float | None:
    match = _DURATION.match(text)
    if not match:
        return None
    return float(match.group(1)) * _UNIT_S[match.group(2)]


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[PolicyIssue] = []

    def error(self, node: yaml.Node | None, field: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        column = node.start_mark.column + 1 if node is not None else 1
        self.issues.append(PolicyIssue(self.source, line, column, field, message))

    # -- structure helpers ---------------------------------------------------------------

    def mapping(self, node: yaml.Node, field: str, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, field, f"expected a mapping with keys {', '.join(allowed)}")
            return {}
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{field}.{key}" if field else key
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
                self.error(key_node, where, f"unknown key{suggestion} (allowed: {', '.join(allowed)})")
                continue
            if key in out:
                self.error(key_node, where, "duplicate key")
                continue
            out[key] = value_node
        return out

    def scalar(self, node: yaml.Node, field: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, field, "expected a single value")
            return None
        return yaml.safe_load(yaml.serialize(node))

    def string(self, node: yaml.Node, field: str, choices: tuple[str, ...] = ()) -> str | None:
        value = self.scalar(node, field)
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.error(node, field, "expected a string")
            return None
        value = str(value)
        if choices and value not in choices:
            hint = difflib.get_close_matches(value, choices, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            self.error(node, field, f"'{value}' is not one of {', '.join(choices)}{suggestion}")
            return None
        return value

    def number(self, node: yaml.Node, field: str, check: Callable[[float], bool], rule: str) -> float | None:
        value = self.scalar(node, field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(node, field, f"expected a number {rule}")
            return None
        if not check(float(value)):
            self.error(node, field, f"{value} is out of range: must be {rule}")
            return None
        return float(value)

    def boolean(self, node: yaml.Node, field: str) -> bool | None:
        value = self.scalar(node, field)
        if not isinstance(value, bool):
            self.error(node, field, "expected true or false")
            return None
        return value

    def duration(self, node: yaml.Node, field: str) -> float | None:
        value = self.scalar(node, field)
        seconds = parse_duration(str(value)) if isinstance(value, str) else None
        if seconds is None or seconds <= 0:
            self.error(node, field, f"expected a duration such as 30s, 10m, 1h or 1d, got {value!r}")
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
            self.issues.append(PolicyIssue(self.source, line, column, "(yaml)", f"not valid YAML: {problem}"))
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
            self.error(top["name"], "name", "use lower-case letters, digits, '.', '_' or '-'")
        version = self.string(top["version"], "version") if "version" in top else None
        mode = self.string(top["mode"], "mode", MODES) if "mode" in top else "enforce"
        fail_mode = (
            self.string(top["fail_mode"], "fail_mode", ("open", "closed")) if "fail_mode" in top else "open"
        )
        windows = self.windows(top["windows"]) if "windows" in top else {}
        burst = self.burst(top.get("burst"), windows)
        allow = self.allow(top["allow"]) if "allow" in top else AllowList()
        tiers = self.tiers(top["tiers"]) if "tiers" in top else {}
        rules = self.rules(top["rules"], windows) if "rules" in top else []

        if self.issues or name is None or version is None or mode is None or fail_mode is None or burst is None:
            return None
        return Policy(
            name=name,
            version=version,
            content_hash=hashlib.sha256(text.encode()).hexdigest()[:12],
            mode=mode,
            fail_mode=fail_mode,
            windows=tuple(windows.values()),
            burst=burst,
            rules=tuple(rules),
            allow=allow,
            tier_scale=tiers,
            source=self.source,
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
                continue
            if label in out:
                self.error(item, field, f"window {label} is listed twice")
                continue
            if seconds > 86400:
                self.error(item, field, "windows longer than 1d are not supported")
                continue
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
            if key in fields:
                value = self.string(fields[key], f"burst.{key}")
                if value is not None and value not in windows:
                    self.error(fields[key], f"burst.{key}", f"'{value}' is not a listed window ({', '.join(windows)})")
                elif value is not None:
                    short, baseline = (value, baseline) if key == "short" else (short, value)
        if "floor_rps" in fields:
            floor = self.number(fields["floor_rps"], "burst.floor_rps", lambda v: v > 0, "> 0") or floor
        if windows.get(short) and windows.get(baseline) and windows[short].seconds >= windows[baseline].seconds:
            self.error(node, "burst", f"the short window ({short}) must be shorter than the baseline ({baseline})")
        return BurstConfig(short, baseline, floor)

    def allow(self, node: yaml.Node) -> AllowList:
        fields = self.mapping(node, "allow", ALLOW_KEYS)
        lists: dict[str, list[str]] = {}
        for key, value_node in fields.items():
            lists[key] = []
            for i, item in enumerate(self.sequence(value_node, f"allow.{key}")):
                value = self.string(item, f"allow.{key}[{i}]")
                if value is not None:
                    lists[key].append(value)
        networks = []
        for i, text in enumerate(lists.get("networks", [])):
            try:
                networks.append(ip_network(text, strict=False))
            except ValueError:
                self.error(fields["networks"].value[i], f"allow.networks[{i}]", f"'{text}' is not a CIDR")
        return AllowList(frozenset(lists.get("api_keys", [])), frozenset(lists.get("accounts", [])), tuple(networks))

    def tiers(self, node: yaml.Node) -> dict[str, float]:
        out: dict[str, float] = {}
        if not isinstance(node, yaml.MappingNode):
            self.error(node, "tiers", "expected a mapping of tier name to settings")
            return out
        for key_node, value_node in node.value:
            tier = str(key_node.value)
            fields = self.mapping(value_node, f"tiers.{tier}", TIER_KEYS)
            if "scale" in fields:
                scale = self.number(fields["scale"], f"tiers.{tier}.scale", lambda v: v > 0, "> 0")
                if scale is not None:
                    out[tier] = scale
        return out

    def rules(self, node: yaml.Node, windows: dict[str, Window]) -> list[Rule]:
        out: list[Rule] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(self.sequence(node, "rules")):
            rule = self.rule(item, f"rules[{i}]", windows)
            if rule is None:
                continue
            if rule.name in seen:
                self.error(item, f"rules[{i}].name", f"duplicate rule name '{rule.name}' (first at rules[{seen[rule.name]}])")
                continue
            seen[rule.name] = i
            out.append(rule)
        return out

    def rule(self, node: yaml.Node, field: str, windows: dict[str, Window]) -> Rule | None:
        fields = self.mapping(node, field, RULE_KEYS)
        if not isinstance(node, yaml.MappingNode):
            return None
        before = len(self.issues)
        for required in ("name", "subject", "when", "action", "for"):
            if required not in fields:
                self.error(node, f"{field}.{required}", "is required")
        name = self.string(fields["name"], f"{field}.name") if "name" in fields else None
        if name is not None and not _NAME.match(name):
            self.error(fields["name"], f"{field}.name", "use lower-case letters, digits, '.', '_' or '-'")
        where = f"rules.{name}" if name else field
        subject = self.string(fields["subject"], f"{where}.subject", SUBJECT_KINDS) if "subject" in fields else None
        action = (
            self.string(fields["action"], f"{where}.action", tuple(a for a in ACTIONS if a != "allow"))
            if "action" in fields
            else None
        )
        duration = self.duration(fields["for"], f"{where}.for") if "for" in fields else None
        limit = None
        if "limit_rps" in fields:
            limit = self.number(fields["limit_rps"], f"{where}.limit_rps", lambda v: v > 0, "> 0")
            if action is not None and action != "throttle":
                self.error(fields["limit_rps"], f"{where}.limit_rps", f"only a throttle has a rate; this rule's action is {action}")
        elif action == "throttle":
            self.error(node, f"{where}.limit_rps", "a throttle needs limit_rps (requests per second)")
        shadow = bool(self.boolean(fields["shadow"], f"{where}.shadow")) if "shadow" in fields else False
        description = self.string(fields["description"], f"{where}.description") if "description" in fields else ""
        conditions = []
        if "when" in fields:
            items = self.sequence(fields["when"], f"{where}.when")
            if isinstance(fields["when"], yaml.SequenceNode) and not items:
                self.error(fields["when"], f"{where}.when", "a rule needs at least one condition")
            for j, item in enumerate(items):
                cond = self.condition(item, f"{where}.when[{j}]", windows)
                if cond is not None:
                    conditions.append(cond)
        if len(self.issues) > before or None in (name, subject, action, duration):
            return None
        assert name and subject and action and duration
        return Rule(name, subject, tuple(conditions), action, duration, limit, shadow, description or "")

    def condition(self, node: yaml.Node, field: str, windows: dict[str, Window]) -> Condition | None:
        text = self.string(node, field)
        if text is None:
            return None
        match = _CONDITION.match(text)
        if not match:
            self.error(node, field, f"'{text}' is not a condition; write it as 'signal[window] > number', e.g. 'rps[1m] > 5'")
            return None
        signal, window = match.group("signal"), match.group("window")
        op, threshold = match.group("op"), float(match.group("threshold"))
        spec = SIGNALS.get(signal)
        if spec is None:
            hint = difflib.get_close_matches(signal, SIGNALS, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            self.error(node, field, f"unknown signal '{signal}'{suggestion} (known: {', '.join(sorted(SIGNALS))})")
            return None
        if spec.windowed and window is None:
            self.error(node, field, f"'{signal}' is read over a window: write {signal}[{next(iter(windows), '1m')}]")
            return None
        if not spec.windowed and window is not None:
            self.error(node, field, f"'{signal}' has no window: write it without [{window}]")
            return None
        if window is not None and window not in windows:
            self.error(node, field, f"window '{window}' is not listed under windows ({', '.join(windows)})")
            return None
        if threshold < 0 or (signal.endswith(_RATIO_SUFFIXES) and threshold > 1):
            bound = "between 0 and 1" if signal.endswith(_RATIO_SUFFIXES) else ">= 0"
            self.error(node, field, f"threshold {threshold:g} can never be met: '{signal}' is {bound}")
            return None
        if op in ("<", "<=") and threshold == 0 and op == "<":
            self.error(node, field, f"'{signal} < 0' can never be true")
            return None
        assert op in OPERATORS
        return Condition(signal, window, op, threshold, text.strip())
