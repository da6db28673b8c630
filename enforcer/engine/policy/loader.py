"""Strict policy loading: every error names its file, line, column and field.

The YAML is composed into nodes (which keep their positions) and walked by hand rather than
loaded into dicts, so an unknown key, a wrong type or an impossible threshold can be reported
where the author typed it. All errors of a file are collected, not just the first, and each
says what would have been allowed.
"""

from __future__ import annotations

import hashlib
from ipaddress import ip_network
from pathlib import Path

import yaml

from enforcer.core.counts import Window
from enforcer.core.decisions import MODES
from enforcer.engine.detectors import BurstConfig
from enforcer.engine.policy.checks import (
    ALLOW_KEYS,
    BURST_KEYS,
    NAME_PATTERN,
    NAME_RULE,
    TIER_KEYS,
    TOP_KEYS,
    PolicyError,
    PolicyIssue,
)
from enforcer.engine.policy.model import (
    AllowList,
    Override,
    Policy,
)
from enforcer.engine.policy.override_checks import OverrideChecks


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


class _Checker(OverrideChecks):
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
        if name is not None and not NAME_PATTERN.match(name):
            self.error(top["name"], "name", NAME_RULE)
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
