"""What-if: replay the same events under two policies and say what the change would do.

`enforcer policy diff --events F.jsonl OLD.yaml NEW.yaml [--html R.html]` runs the backtest
(the worker's own pipeline, in isolated Redis namespaces) once per policy, then compares: which
subjects would be treated differently, how the counts by rule and action move, examples with
their reasons, and a timeline of decisions per rule and action for both policies. Comparing is
a plain function of the two backtest reports; only `diff_policies` does I/O.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from enforcer.core.decisions import ACTION_RANK, Decision, Reason
from enforcer.core.settings import Settings
from enforcer.engine.policy.checks import PolicyError
from enforcer.engine.policy.loader import load_policy
from enforcer.engine.policy.model import Policy
from enforcer.tools.backtest import BacktestReport, run_backtest
from enforcer.tools.policy_report import TEMPLATE

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
    version_tag: str
    events: int
    decisions: int
    counts: Counter[tuple[str, str, str]]  # (mode, rule, action) -> decisions
    subjects_enforced: int
    requests_denied: int


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
    return Side(
        policy.version_tag,
        report.events,
        len(report.decisions),
        report.by_action_and_rule(),
        len({d.subject.key for d in report.decisions if d.mode == "enforce"}),
        sum(report.denied.values()),
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


# -- text -----------------------------------------------------------------------------------


def describe(outcome: Outcome) -> str:
    text = outcome.enforce
    if outcome.shadow != NONE:
        text += f" (shadow {outcome.shadow})"
    return text


def explain(decision: Decision) -> str:
    """`action by rule: signal[window] value (threshold t), ...`: why a decision was taken."""
    reasons = ", ".join(_reason(r) for r in decision.reasons)
    return f"{decision.action} by {decision.rule}: {reasons}"


def _reason(r: Reason) -> str:
    name = f"{r.signal}[{r.window}]" if r.window and r.detector != "escalation" else r.signal
    if r.detector == "escalation":
        return f"{r.value:g} strikes within {r.window} (step at {r.threshold:g})"
    return f"{name} {r.value:.4g} (threshold {r.threshold:g})"


def format_diff(diff: PolicyDiff, examples: int = 20) -> str:
    old, new = diff.old, diff.new
    lines = [
        f"what-if on {diff.events_path}: {old.events:,} events replayed under each policy",
        f"  old  {old.version_tag:40} {old.decisions:6,} decisions, {old.subjects_enforced:,}"
        f" subjects acted on, {old.requests_denied:,} requests denied",
        f"  new  {new.version_tag:40} {new.decisions:6,} decisions, {new.subjects_enforced:,}"
        f" subjects acted on, {new.requests_denied:,} requests denied",
        "",
        f"decisions by rule and action{'':24}old     new  change",
    ]
    for mode, rule, action in sorted(set(old.counts) | set(new.counts)):
        a, b = old.counts[(mode, rule, action)], new.counts[(mode, rule, action)]
        lines.append(f"  {mode:8} {rule:28} {action:9} {a:7,} {b:7,} {b - a:+7,}")
    stricter = sum(1 for c in diff.changes if c.direction > 0)
    lighter = sum(1 for c in diff.changes if c.direction < 0)
    lines += [
        "",
        f"subjects whose action changes: {len(diff.changes)} ({stricter} stricter, {lighter}"
        f" lighter, {len(diff.changes) - stricter - lighter} in shadow only)",
    ]
    for change in diff.changes[:examples]:
        lines.append(f"  {change.subject:32} {describe(change.old):>24} -> {describe(change.new)}")
        for label, decision in change.evidence():
            lines.append(f"      {label}: {explain(decision)}")
    if len(diff.changes) > examples:
        lines.append(f"  ... and {len(diff.changes) - examples} more (--examples N shows more)")
    return "\n".join(lines)


# -- HTML -----------------------------------------------------------------------------------


def _json_for_script(data: Any) -> str:
    # Inside <script>, "</" would end the element: escape it (and HTML-significant characters).
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def report_data(diff: PolicyDiff, examples: int = 200) -> dict[str, Any]:
    """What the HTML report's script draws from: plain JSON, no Python types."""
    t = diff.timeline
    return {
        "old": diff.old.version_tag,
        "new": diff.new.version_tag,
        "start": t.start,
        "bin_s": t.bin_s,
        "series": [
            {"label": s.label, "rule": s.rule, "action": s.action, "mode": s.mode} for s in t.series
        ],
        "bins": {"old": [list(r) for r in t.old], "new": [list(r) for r in t.new]},
        "bars": {"old": t.bars("old"), "new": t.bars("new")},
        "changes": len(diff.changes),
        "shown": min(examples, len(diff.changes)),
    }


def render_html(diff: PolicyDiff, examples: int = 200) -> str:
    """A self-contained page: inline CSS, inline script, inline SVG; nothing is fetched."""
    template = TEMPLATE
    esc = html.escape
    old, new = diff.old, diff.new
    count_rows = []
    for mode, rule, action in sorted(set(old.counts) | set(new.counts)):
        a, b = old.counts[(mode, rule, action)], new.counts[(mode, rule, action)]
        cls = "up" if b > a else "down" if b < a else ""
        count_rows.append(
            f"<tr><td>{esc(mode)}</td><td>{esc(rule)}</td><td>{esc(action)}</td>"
            f'<td class="n">{a:,}</td><td class="n">{b:,}</td>'
            f'<td class="n {cls}">{b - a:+,}</td></tr>'
        )
    change_rows = []
    for change in diff.changes[:examples]:
        cls = "up" if change.direction > 0 else "down" if change.direction < 0 else "shadow"
        change_rows.append(
            f'<tr class="{cls}"><td><code>{esc(change.subject)}</code></td>'
            f"<td>{esc(describe(change.old))}</td><td>{esc(describe(change.new))}</td>"
            f"<td>{'<br>'.join(esc(f'{label}: {explain(d)}') for label, d in change.evidence())}"
            "</td></tr>"
        )
    more = len(diff.changes) - examples
    summary_rows = "".join(
        f"<tr><th>{label}</th><td><code>{esc(s.version_tag)}</code></td>"
        f'<td class="n">{s.decisions:,}</td><td class="n">{s.subjects_enforced:,}</td>'
        f'<td class="n">{s.requests_denied:,}</td></tr>'
        for label, s in (("old", old), ("new", new))
    )
    values = {
        "title": esc(f"What-if: {old.version_tag} -> {new.version_tag}"),
        "events_path": esc(diff.events_path),
        "events": f"{old.events:,}",
        "summary_rows": summary_rows,
        "count_rows": "\n".join(count_rows)
        or '<tr><td colspan="6">no decisions under either policy</td></tr>',
        "change_count": str(len(diff.changes)),
        "change_rows": "\n".join(change_rows)
        or '<tr><td colspan="4">no subject changes action</td></tr>',
        "more": f"<p>... and {more:,} more subjects.</p>" if more > 0 else "",
        "bin_s": f"{diff.timeline.bin_s:g}",
        "old_tag": esc(old.version_tag),
        "new_tag": esc(new.version_tag),
        "data": _json_for_script(report_data(diff, examples)),
    }
    for name, value in values.items():
        template = template.replace("{{" + name + "}}", value)
    return template


# -- the command ----------------------------------------------------------------------------


async def run_command(
    settings: Settings,
    args: argparse.Namespace,
    progress: Callable[[str, int], None] | None = None,
) -> int:
    """`enforcer policy diff`: exit 0 with the report, 2 when a policy or the events are bad."""
    policies = []
    failed = False
    for path in (args.old, args.new):
        try:
            policies.append(load_policy(path))
        except PolicyError as exc:
            failed = True
            for issue in exc.issues:
                print(issue, file=sys.stderr)
    if failed:
        return 2
    if not args.events.is_file():
        print(f"enforcer: no events file at {args.events}", file=sys.stderr)
        return 2
    diff = await diff_policies(settings, policies[0], policies[1], args.events, progress)
    print(format_diff(diff, args.examples))
    if args.html is not None:
        args.html.write_text(render_html(diff), encoding="utf-8")
        print(f"\nreport written to {args.html}")
    return 0
