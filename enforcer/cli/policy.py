"""`enforcer policy diff`: the shell over the what-if (enforcer.tools.policy_diff)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from enforcer.cli.output import EXIT_OK, EXIT_USAGE, Progress, UserError, emit
from enforcer.core.settings import Settings


def add_diff_parser(policy_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = policy_sub.add_parser(
        "diff",
        help="what-if: backtest two policies on the same events",
        description="Replay the same events under two policies and report what would change: "
        "the edit itself, decisions per rule, the subjects treated differently and why, and "
        "with --labels whether they are attackers or customers.",
    )
    diff.add_argument("--events", required=True, type=Path, help="gateway_event.v1 JSON lines")
    diff.add_argument("old", type=Path, help="the policy in force")
    diff.add_argument("new", type=Path, help="the policy you would roll out")
    diff.add_argument(
        "--labels", type=Path, default=None, help="labels JSON from `enforcer simulate --labels`"
    )
    diff.add_argument("--html", type=Path, default=None, help="also write a self-contained report")
    diff.add_argument("--json", action="store_true", help="every figure as one JSON document")
    diff.add_argument("--examples", type=int, default=20, help="changed subjects listed")


def _labels(path: Path | None) -> dict[str, dict[str, object]] | None:
    from enforcer.tools.backtest import load_labels

    if path is None:
        return None
    if not path.is_file():
        raise UserError(f"policy diff: --labels {path}: no such file")
    try:
        labels = load_labels(path)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"policy diff: --labels {path}: not JSON ({exc})") from None
    if not labels or not all(isinstance(v, dict) for v in labels.values()):
        raise UserError(f"policy diff: --labels {path}: expected an object of api_key -> label")
    return labels


async def diff(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 with the report; 2 when a policy does not check out or an input is missing."""
    from enforcer.engine.policy import PolicyError, load_policy
    from enforcer.tools.policy_diff import diff_policies
    from enforcer.tools.policy_doc import diff_doc, format_text
    from enforcer.tools.policy_report import render_html

    policies = []
    for path in (args.old, args.new):
        try:
            policies.append(load_policy(path))
        except PolicyError as exc:
            for issue in exc.issues:
                print(issue, file=sys.stderr)
    if len(policies) < 2:
        return EXIT_USAGE
    if not args.events.is_file():
        raise UserError(f"policy diff: --events {args.events}: no such file")
    labels = _labels(args.labels)
    progress = Progress("lines replayed")
    try:
        found = await diff_policies(
            settings,
            policies[0],
            policies[1],
            args.events,
            lambda side, n: progress.update(n, f" ({side})"),
        )
    finally:
        progress.close()
    doc = diff_doc(found, labels, args.examples, str(args.labels) if args.labels else None)
    if args.html is not None:
        args.html.write_text(render_html(found, doc), encoding="utf-8")
        doc["html"] = str(args.html)
    if args.json:
        emit(doc)
    else:
        print(format_text(doc))
    return EXIT_OK
