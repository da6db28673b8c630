"""Checks on YAML nodes that report where the author typed the mistake: the base of the policy
checker (enforcer.engine.policy.loader), collecting every issue of a file with its line,
column and field."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from enforcer.core.decisions import ACTIONS
from enforcer.core.subjects import SUBJECT_KINDS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CONDITION_PATTERN = re.compile(
    r"^\s*(?P<signal>[a-z_]+)\s*(?:\[\s*(?P<window>[^\]\s]+)\s*\])?\s*"
    r"(?P<op>>=|<=|>|<)\s*(?P<threshold>-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*$"
)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
NAME_RULE = "use lower-case letters, digits, '.', '_' or '-' (at most 64)"

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
RATIO_SUFFIXES = ("_share", "_ratio", "_regularity")


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


def parse_duration(text: str) -> float | None:
    match = _DURATION.match(text)
    if not match:
        return None
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    hint = difflib.get_close_matches(value, list(choices), n=1)
    return f"; did you mean '{hint[0]}'?" if hint else ""


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class NodeChecker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[PolicyIssue] = []
        self.declared_tiers: tuple[str, ...] = ()

    def error(self, node: yaml.Node | None, field: str, message: str) -> None:
        line = line_of(node) if node is not None else 1
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
                hint = did_you_mean(key, allowed)
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
            hint = did_you_mean(value, choices)
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
