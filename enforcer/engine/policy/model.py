"""Typed policy objects. The loader builds them from YAML and rejects what does not fit."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from enforcer.core.counts import Window
from enforcer.engine.detectors import SIGNALS, BurstConfig

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True, slots=True)
class Condition:
    signal: str
    window: str | None
    op: str
    threshold: float
    text: str
    # Derived once: a condition is matched for every subject of every batch.
    key: str = field(init=False, repr=False, compare=False)  # its signal's name in a signal map
    scaled: bool = field(init=False, repr=False, compare=False)  # the tier's scale applies
    holds: Callable[[float, float], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spec = SIGNALS.get(self.signal)
        key = f"{self.signal}[{self.window}]" if self.window else self.signal
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "scaled", spec is not None and spec.volume)
        object.__setattr__(self, "holds", OPERATORS[self.op])


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """A stronger action for a repeat offender: used once the rule has already published
    `after` decisions for the subject within the rule's `strikes_within`."""

    after: int
    action: str
    duration_s: float
    limit_rps: float | None = None


# How long a rule remembers its decisions for a subject when counting strikes.
DEFAULT_STRIKES_WITHIN_S = 86400.0


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    subject: str
    when: tuple[Condition, ...]
    action: str
    duration_s: float
    limit_rps: float | None = None
    shadow: bool = False
    description: str = ""
    escalate: tuple[EscalationStep, ...] = ()
    strikes_within_s: float = DEFAULT_STRIKES_WITHIN_S


@dataclass(frozen=True, slots=True)
class RuleChange:
    """What an override changes in one rule; None leaves the less specific setting in force."""

    scale: float | None = None
    action: str | None = None
    limit_rps: float | None = None
    duration_s: float | None = None
    shadow: bool | None = None
    escalate: tuple[EscalationStep, ...] | None = None


@dataclass(frozen=True, slots=True)
class Override:
    """Changes for one tier (`selector` "tier") or one subject (`selector` a subject kind).

    `scale` multiplies the thresholds of volume signals in every rule, `disable` names rules
    that never fire for the selection, `rules` changes single rules."""

    selector: str
    value: str
    scale: float | None = None
    disable: frozenset[str] = frozenset()
    rules: Mapping[str, RuleChange] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AllowList:
    api_keys: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()
    networks: tuple[IPv4Network | IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: str
    content_hash: str
    mode: str
    fail_mode: str
    windows: tuple[Window, ...]
    burst: BurstConfig
    rules: tuple[Rule, ...]
    allow: AllowList = field(default_factory=AllowList)
    tier_scale: dict[str, float] = field(default_factory=dict)
    source: str = "<memory>"
    tier_overrides: Mapping[str, Override] = field(default_factory=dict)
    # Keyed by (subject kind, value), the same pair as decisions.Subject.
    subject_overrides: Mapping[tuple[str, str], Override] = field(default_factory=dict)

    @property
    def version_tag(self) -> str:
        """What every decision carries: the policy's name, its stated version and content hash."""
        return f"{self.name}@{self.version}#{self.content_hash}"
