"""Typed policy objects. The loader builds them from YAML and rejects what does not fit."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from enforcer.detectors import BurstConfig
from enforcer.windows.store import Window

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

    @property
    def key(self) -> str:
        return f"{self.signal}[{self.window}]" if self.window else self.signal


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

    @property
    def version_tag(self) -> str:
        """What every decision carries: the policy's name, its stated version and content hash."""
        return f"{self.name}@{self.version}#{self.content_hash}"
