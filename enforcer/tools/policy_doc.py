"""The what-if's figures, assembled once as one JSON document, and its text rendering.

`--json` prints this document; the console text and the HTML report are drawn from it, so a
figure the text prints is a figure the JSON holds, under a name that says what it is.
"""

from __future__ import annotations

from typing import Any

from enforcer.core.decisions import Decision
from enforcer.tools.policy_charts import rule_colour
from enforcer.tools.policy_diff import NONE, Outcome, PolicyDiff, Side, SubjectChange
from enforcer.tools.policy_labels import Labels, labelled_figures
from enforcer.tools.policy_reasons import explain, explain_reasons


def describe(outcome: Outcome) -> str:
    text = outcome.enforce
    if outcome.shadow != NONE:
        text += f" (shadow {outcome.shadow})"
    return text


def _side_doc(side: Side) -> dict[str, Any]:
    return {
        "policy": side.version_tag,
        "file": side.policy.source,
        "decisions": side.decisions,
        "subjects_acted_on": side.subjects_enforced,
        "requests_denied": side.requests_denied,
        "keys_affected": len(side.affected),
    }


def _rules_doc(diff: PolicyDiff) -> list[dict[str, Any]]:
    edited = {c.name: c.kind for c in diff.edits.rules}
    rows = []
    for rule in diff.rules:
        row: dict[str, Any] = {
            "rule": rule,
            "colour": rule_colour(rule),
            "edited": edited.get(rule),
        }
        for name, side in (("old", diff.old), ("new", diff.new)):
            row[name] = {
                "decisions": sum(n for (_, r, _), n in side.counts.items() if r == rule),
                "subjects": len(side.rule_subjects.get(rule, ())),
            }
        rows.append(row)
    return rows


def _evidence(diff: PolicyDiff, label: str, decision: Decision) -> dict[str, Any]:
    policy = (diff.new if label.startswith("new") else diff.old).policy
    reasons = explain_reasons(decision, policy, diff.tiers)
    return {
        "side": label,
        "mode": decision.mode,
        "rule": decision.rule,
        "action": decision.action,
        "text": explain(decision, reasons),
        "reasons": [r.as_doc() for r in reasons],
    }


def _change_doc(diff: PolicyDiff, change: SubjectChange, labels: Labels | None) -> dict[str, Any]:
    label, population = labels.of(change.subject) if labels is not None else (None, None)
    return {
        "subject": change.subject,
        "old": describe(change.old),
        "new": describe(change.new),
        "direction": {1: "stricter", -1: "lighter", 0: "shadow only"}[change.direction],
        "label": label,
        "population": population,
        "evidence": [_evidence(diff, side, d) for side, d in change.evidence()],
    }


def diff_doc(
    diff: PolicyDiff,
    labels: dict[str, dict[str, Any]] | None = None,
    examples: int = 20,
    labels_file: str | None = None,
) -> dict[str, Any]:
    """Every figure of the what-if, as plain JSON types."""
    known = Labels(labels) if labels is not None else None
    stricter = sum(1 for c in diff.changes if c.direction > 0)
    lighter = sum(1 for c in diff.changes if c.direction < 0)
    counts = []
    for mode, rule, action in sorted(set(diff.old.counts) | set(diff.new.counts)):
        a, b = diff.old.counts[(mode, rule, action)], diff.new.counts[(mode, rule, action)]
        counts.append(
            {"mode": mode, "rule": rule, "action": action, "old": a, "new": b, "change": b - a}
        )
    return {
        "events_file": diff.events_path,
        "events": diff.old.events,
        "old": _side_doc(diff.old),
        "new": _side_doc(diff.new),
        "policy_changes": diff.edits.as_doc(),
        "rules": _rules_doc(diff),
        "counts": counts,
        "subjects": {
            "changed": len(diff.changes),
            "stricter": stricter,
            "lighter": lighter,
            "shadow_only": len(diff.changes) - stricter - lighter,
            "listed": min(examples, len(diff.changes)),
            "items": [_change_doc(diff, c, known) for c in diff.changes[:examples]],
        },
        "labels": None if known is None else {"file": labels_file, **labelled_figures(diff, known)},
    }


# -- text -------------------------------------------------------------------------------------


def _policy_lines(doc: dict[str, Any]) -> list[str]:
    out = []
    for name in ("old", "new"):
        s = doc[name]
        out.append(
            f"  {name}  {s['policy']:40} {s['decisions']:6,} decisions, "
            f"{s['subjects_acted_on']:,} subjects acted on, {s['requests_denied']:,} requests "
            f"denied, {s['keys_affected']:,} keys affected"
        )
    return out


def _changes_lines(changes: dict[str, Any]) -> list[str]:
    out = []
    for title in ("rules", "overrides"):
        for item in changes[title]:
            out.append(f"  {title[:-1]} {item['name']}: {item['change']}")
            out.extend(f"      {f['field']}: {f['old']} -> {f['new']}" for f in item["fields"])
    windows = changes["windows"]
    if windows["added"] or windows["removed"]:
        out.append(
            f"  windows: added {', '.join(windows['added']) or 'none'}; "
            f"removed {', '.join(windows['removed']) or 'none'}"
        )
    out.extend(f"  {f['field']}: {f['old']} -> {f['new']}" for f in changes["settings"])
    return out or ["  nothing that decides (only comments or layout differ)"]


def _rules_lines(rules: list[dict[str, Any]]) -> list[str]:
    out = [f"per rule{'':34}decisions old    new  change   subjects old    new  change"]
    for r in rules:
        name = r["rule"] + (f" ({r['edited']})" if r["edited"] else "")
        old, new = r["old"], r["new"]
        out.append(
            f"  {name:42} {old['decisions']:4,} {new['decisions']:7,}"
            f" {new['decisions'] - old['decisions']:+7,} {old['subjects']:14,}"
            f" {new['subjects']:7,} {new['subjects'] - old['subjects']:+7,}"
        )
    return out


def _labels_lines(lab: dict[str, Any]) -> list[str]:
    a, b = lab["attack"], lab["benign"]
    out = [
        f"against the labels in {lab['file']}:",
        f"  attack keys {a['keys']:6,}: caught {a['caught']['old']:,} -> {a['caught']['new']:,}"
        f" ({a['newly_caught']:,} newly caught, {a['lost']:,} lost); requests denied"
        f" {a['denied']['old']:,} -> {a['denied']['new']:,} of {a['requests']:,}",
        f"  benign keys {b['keys']:6,}: affected {b['affected']['old']:,} ->"
        f" {b['affected']['new']:,} ({b['newly_affected']:,} newly affected, {b['spared']:,}"
        f" spared); requests denied {b['denied']['old']:,} -> {b['denied']['new']:,}"
        f" of {b['requests']:,}",
        f"  by population{'':12}keys  touched old    new   denied old      new",
    ]
    for p in lab["populations"]:
        touched = p["caught"] if p["attack"] else p["affected"]
        kind = "attack" if p["attack"] else "benign"
        moved = touched["old"] != touched["new"] or p["denied"]["old"] != p["denied"]["new"]
        out.append(
            f"    {p['population']:20} {p['keys']:6,} {touched['old']:11,} {touched['new']:6,}"
            f" {p['denied']['old']:12,} {p['denied']['new']:8,}  {kind}"
            + ("  <- changed" if moved else "")
        )
    for label, counts in lab["changed_subjects"].items():
        out.append(
            f"  changed {label} subjects: {counts['stricter']} stricter, {counts['lighter']}"
            f" lighter, {counts['shadow_only']} in shadow only"
        )
    if lab["benign_newly_affected"]:
        out.append("  benign keys newly affected (harm):")
        out.extend(
            f"    {k['api_key']:32} {k['population']:18} {k['denied']:,} of {k['requests']:,}"
            " requests denied"
            for k in lab["benign_newly_affected"]
        )
    return out


def format_text(doc: dict[str, Any]) -> str:
    subjects = doc["subjects"]
    lines = [
        f"what-if on {doc['events_file']}: {doc['events']:,} events replayed under each policy",
        *_policy_lines(doc),
        "",
        "policy changes (old -> new)",
        *_changes_lines(doc["policy_changes"]),
        "",
        *_rules_lines(doc["rules"]),
        "",
        f"decisions by rule and action{'':24}old     new  change",
    ]
    for c in doc["counts"]:
        lines.append(
            f"  {c['mode']:8} {c['rule']:28} {c['action']:9} {c['old']:7,} {c['new']:7,}"
            f" {c['change']:+7,}"
        )
    if doc["labels"] is not None:
        lines += ["", *_labels_lines(doc["labels"])]
    lines += [
        "",
        f"subjects whose action changes: {subjects['changed']} ({subjects['stricter']} stricter,"
        f" {subjects['lighter']} lighter, {subjects['shadow_only']} in shadow only)",
    ]
    for item in subjects["items"]:
        mark = ""
        if item["label"] is not None:
            mark = f"  [{item['label']}" + (
                f": {item['population']}]" if item["population"] else "]"
            )
        lines.append(f"  {item['subject']:32} {item['old']:>24} -> {item['new']}{mark}")
        lines.extend(f"      {e['side']}: {e['text']}" for e in item["evidence"])
    more = subjects["changed"] - subjects["listed"]
    if more > 0:
        lines.append(f"  ... and {more} more (--examples N shows more)")
    if "html" in doc:
        lines += ["", f"report written to {doc['html']}"]
    return "\n".join(lines)
