"""What-if: replay the same events under two policies and say what the change would do.

`enforcer policy diff --events F.jsonl OLD.yaml NEW.yaml [--labels L.json] [--json]
[--html R.html]` runs the backtest (the worker's own pipeline, in isolated Redis namespaces)
once per policy, then compares: what the edit changed in the file, which subjects would be
treated differently and why, how decisions move per rule, which keys lose or gain requests,
and with labels, whether those keys are attackers or the customers who must not be hurt.
Comparing is a plain function of the two backtest reports; only `diff_policies` does I/O.
The figures are assembled once (enforcer.tools.policy_doc); the text, the JSON and the HTML
report (enforcer.tools.policy_report) all read them from there.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from enforcer.core.decisions import ACTION_RANK, Decision
from enforcer.core.settings import Settings
from enforcer.engine.policy.model import Policy
from enforcer.tools.backtest import BacktestReport, run_backtest
from enforcer.tools.policy_changes import PolicyChanges, summarise
from enforcer.tools.policy_reasons import TierBook

NONE = "none"
TIMELINE_BINS = 48


class Outcome(NamedTuple):
    """The strongest action a subject received under one policy, per mode, and the decisions
    that carried them: the examples, with their reasons."""

    enforce: str
    shadow: str
    enforce_example: Decision | None = None
    shadow_example: Decision | None = None


class SubjectChange(NamedTuple):
    subject: str
    old: Outcome
    new: Outcome

    def evidence(self) -> list[tuple[str, Decision]]:
        """The decisions behind what changed: per mode whose action differs, the old and the
        new decision (where there was one)."""
        out = []
        for mode in ("enforce", "shadow"):
            if getattr(self.old, mode) == getattr(self.new, mode):
                continue
            for side, outcome in (("old", self.old), ("new", self.new)):
                example = getattr(outcome, f"{mode}_example")
                if example is not None:
                    label = side if mode == "enforce" else f"{side} (shadow)"
                    out.append((label, example))
        return out

    @property
    def direction(self) -> int:
        """+1 stricter under the new policy, -1 lighter, 0 same enforcement (shadow moved)."""
        step = ACTION_RANK.get(self.new.enforce, 0) - ACTION_RANK.get(self.old.enforce, 0)
        return (step > 0) - (step < 0)


class Side(NamedTuple):
    policy: Policy
    events: int
    decisions: int
    counts: Counter[tuple[str, str, str]]  # (mode, rule, action) -> decisions
    subjects_enforced: int
    requests_denied: int
    rule_subjects: dict[str, frozenset[str]]  # rule -> subjects it decided on, either mode
    denied: Counter[str]  # api_key -> requests a gateway would have refused or slowed
    affected: frozenset[str]  # api_keys any enforced action touched

    @property
    def version_tag(self) -> str:
        return self.policy.version_tag


class Series(NamedTuple):
    mode: str
    rule: str
    action: str

    @property
    def label(self) -> str:
        return f"{self.rule} · {self.action}" + (" (shadow)" if self.mode == "shadow" else "")


@dataclass(frozen=True)
class Timeline:
    """Decisions per time bin and series, for both policies on one shared time axis."""

    start: float
    bin_s: float
    series: tuple[Series, ...]
    old: tuple[tuple[int, ...], ...]  # [bin][series]
    new: tuple[tuple[int, ...], ...]

    def bars(self, side: str) -> int:
        """How many bars a chart of this side draws: one per non-empty (bin, series) cell."""
        rows = self.old if side == "old" else self.new
        return sum(1 for row in rows for n in row if n)


@dataclass(frozen=True)
class PolicyDiff:
    events_path: str
    old: Side
    new: Side
    changes: tuple[SubjectChange, ...]
    timeline: Timeline
    edits: PolicyChanges
    requests: Counter[str]  # api_key -> requests replayed (the same under both policies)
    tiers: TierBook

    @property
    def rules(self) -> tuple[str, ...]:
        """Every rule of either policy, and any that decided: the file order, new ones last."""
        names = [r.name for r in self.old.policy.rules]
        names += [r.name for r in self.new.policy.rules if r.name not in names]
        decided = {rule for side in (self.old, self.new) for (_, rule, _) in side.counts}
        return tuple(names + sorted(decided - set(names)))


# -- comparing ------------------------------------------------------------------------------


def outcomes(decisions: list[Decision]) -> dict[str, Outcome]:
    strongest: dict[str, dict[str, Decision]] = {}
    for d in decisions:
        per_mode = strongest.setdefault(d.subject.key, {})
        current = per_mode.get(d.mode)
        if current is None or ACTION_RANK[d.action] > ACTION_RANK[current.action]:
            per_mode[d.mode] = d
    out = {}
    for subject, per_mode in strongest.items():
        enforce, shadow = per_mode.get("enforce"), per_mode.get("shadow")
        out[subject] = Outcome(
            enforce.action if enforce else NONE, shadow.action if shadow else NONE, enforce, shadow
        )
    return out


def _side(policy: Policy, report: BacktestReport) -> Side:
    rule_subjects: dict[str, set[str]] = {}
    for d in report.decisions:
        rule_subjects.setdefault(d.rule, set()).add(d.subject.key)
    return Side(
        policy,
        report.events,
        len(report.decisions),
        report.by_action_and_rule(),
        len({d.subject.key for d in report.decisions if d.mode == "enforce"}),
        sum(report.denied.values()),
        {rule: frozenset(s) for rule, s in rule_subjects.items()},
        report.denied,
        frozenset(report.first_detected),
    )


def timeline(old: list[Decision], new: list[Decision], bins: int = TIMELINE_BINS) -> Timeline:
    every = old + new
    series = tuple(sorted({Series(d.mode, d.rule, d.action) for d in every}))
    if not every:
        return Timeline(0.0, 1.0, (), (), ())
    start, end = min(d.ts for d in every), max(d.ts for d in every)
    bin_s = max(1.0, math.ceil((end - start + 1) / bins))
    n_bins = int((end - start) // bin_s) + 1
    index = {s: i for i, s in enumerate(series)}

    def grid(decisions: list[Decision]) -> tuple[tuple[int, ...], ...]:
        rows = [[0] * len(series) for _ in range(n_bins)]
        for d in decisions:
            rows[int((d.ts - start) // bin_s)][index[Series(d.mode, d.rule, d.action)]] += 1
        return tuple(tuple(r) for r in rows)

    return Timeline(start, bin_s, series, grid(old), grid(new))


def compare(
    events_path: str,
    old_policy: Policy,
    old: BacktestReport,
    new_policy: Policy,
    new: BacktestReport,
) -> PolicyDiff:
    before, after = outcomes(old.decisions), outcomes(new.decisions)
    empty = Outcome(NONE, NONE)
    changes = []
    for subject in sorted(set(before) | set(after)):
        a, b = before.get(subject, empty), after.get(subject, empty)
        if (a.enforce, a.shadow) != (b.enforce, b.shadow):
            changes.append(SubjectChange(subject, a, b))
    # Biggest moves in enforcement first: what an author most needs to look at.
    changes.sort(
        key=lambda c: (
            -abs(ACTION_RANK.get(c.new.enforce, 0) - ACTION_RANK.get(c.old.enforce, 0)),
            c.subject,
        )
    )
    return PolicyDiff(
        events_path,
        _side(old_policy, old),
        _side(new_policy, new),
        tuple(changes),
        timeline(old.decisions, new.decisions),
        summarise(old_policy, new_policy),
        old.requests,
        TierBook(Path(events_path)),
    )


async def diff_policies(
    settings: Settings,
    old: Policy,
    new: Policy,
    events_path: Path,
    progress: Callable[[str, int], None] | None = None,
) -> PolicyDiff:
    """Backtest both policies on the same events (one after the other, each in its own Redis
    namespace) and compare the results. `progress` is told which side and the lines read."""

    def told(side: str) -> Callable[[int], None] | None:
        return None if progress is None else (lambda lines: progress(side, lines))

    old_report = await run_backtest(settings, old, events_path, progress=told("old"))
    new_report = await run_backtest(settings, new, events_path, progress=told("new"))
    return compare(str(events_path), old, old_report, new, new_report)
