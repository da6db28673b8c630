"""`enforcer decisions list|show|lift`: the decisions in force, read from the decisions topic,
and the operator's undo.

A lift is an `allow` on the decisions topic carrying who lifted and why; gateways act on it as
on any record (an allow removes the subject's decision). Before it is published, the subject's
evidence is cleared in Redis (enforcer.store.lift), so the worker issues a decision again only
once behaviour after the lift crosses a rule.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import time
from ipaddress import ip_address, ip_network

from enforcer.cli.output import UserError, emit
from enforcer.core import decision_log
from enforcer.core.connections import redis_client
from enforcer.core.decisions import ACTIONS, Decision, Subject
from enforcer.core.settings import Settings
from enforcer.core.subjects import SUBJECT_KINDS

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_GRACE = "1h"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    decisions = sub.add_parser("decisions", help="list, show and lift decisions in force")
    cmds = decisions.add_subparsers(dest="decisions_command", required=True)
    listing = cmds.add_parser("list", help="the decisions in force, from the decisions topic")
    listing.add_argument("--kind", choices=SUBJECT_KINDS, help="only subjects of this kind")
    listing.add_argument("--action", choices=ACTIONS[1:], help="only this action")
    listing.add_argument("--shadow", action="store_true", help="list shadow decisions instead")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    show = cmds.add_parser(
        "show", help="a subject's decision in force, its reasons and history; exit 1 if none"
    )
    show.add_argument("subject", help="KIND:VALUE, e.g. api_key:k-123 or network:203.0.113.0/24")
    show.add_argument("--json", action="store_true", help="one JSON document")
    lift = cmds.add_parser(
        "lift",
        help="lift a subject's decision: publish an allow with who and why",
        description="Clears the subject's evidence in Redis and publishes an `allow` with who "
        "and why; the worker decides again only on behaviour after the lift.",
    )
    lift.add_argument("subject", help="KIND:VALUE, e.g. api_key:k-123")
    lift.add_argument("--reason", required=True, help="why, kept on the decision record")
    lift.add_argument(
        "--for",
        dest="grace",
        default=DEFAULT_GRACE,
        help=f"the lift's grace, e.g. 90s, 15m, 2h, 1d (default {DEFAULT_GRACE})",
    )
    lift.add_argument("--by", default=None, help="who lifts (default: $USER)")
    lift.add_argument("--json", action="store_true", help="one JSON document")


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--for {text!r}: expected a duration such as 90s, 15m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_subject(text: str) -> Subject:
    """A subject as the worker spells it: addresses and networks in canonical form."""
    kind, sep, value = text.partition(":")
    if not sep or not value.strip():
        raise UserError(f"subject {text!r}: expected KIND:VALUE, e.g. api_key:k-123")
    if kind not in SUBJECT_KINDS:
        raise UserError(f"subject {text!r}: kind must be one of {', '.join(SUBJECT_KINDS)}")
    value = value.strip()
    try:
        if kind == "ip":
            value = str(ip_address(value))
        elif kind == "network":
            value = str(ip_network(value, strict=False))
        elif kind == "asn":
            value = str(int(value))
    except ValueError as exc:
        raise UserError(f"subject {text!r}: {exc}") from None
    return Subject(kind, value)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.decisions_command == "lift":
        return await _lift(settings, args)
    try:
        records = await decision_log.read_log(settings.kafka_bootstrap, settings.decisions_topic)
    except decision_log.LogReadError as exc:
        raise UserError(str(exc)) from None
    now = time.time()
    if args.decisions_command == "list":
        return _list(records, args, now)
    return _show(records, parse_subject(args.subject), args, now)


def _list(records: list[decision_log.Logged], args: argparse.Namespace, now: float) -> int:
    mode = "shadow" if args.shadow else "enforce"
    rows = []
    for record in decision_log.latest(records).values():
        d = record.decision
        if d is None or d.mode != mode or d.action == "allow":
            continue
        if d.expires_at is not None and d.expires_at <= now:
            continue
        if (args.kind and d.subject.kind != args.kind) or (args.action and d.action != args.action):
            continue
        rows.append(d)
    rows.sort(key=lambda d: (d.subject.kind, d.subject.value))
    if args.json:
        emit({"decisions": [d.to_dict() for d in rows], "count": len(rows)})
        return 0
    for d in rows:
        print(f"{d.subject.key:40} {d.action:8} {d.rule:24} {_expiry(d, now):>12}  {_why(d)}")
    print(f"{len(rows)} {mode} decision(s) in force")
    return 0


def _show(
    records: list[decision_log.Logged], subject: Subject, args: argparse.Namespace, now: float
) -> int:
    past = decision_log.history(records, subject)
    current = decision_log.latest(r for r in records if r.key == subject.key).get(subject.key)
    force = current.decision if current and decision_log.in_force(current.decision, now) else None
    if args.json:
        emit(
            {
                "subject": subject.key,
                "in_force": None if force is None else force.to_dict(),
                "history": [d.to_dict() for d in past],
            }
        )
        return 0 if past else 1
    if not past:
        print(f"{subject.key}: no decision on the topic")
        return 1
    if force is None:
        print(f"{subject.key}: nothing in force (allowed)")
    else:
        print(f"{subject.key}: {force.action} by rule {force.rule}, {_expiry(force, now)}")
        for r in force.reasons:
            window = f" over {r.window}" if r.window else ""
            print(f"  {r.detector}.{r.signal} = {r.value:g} (threshold {r.threshold:g}){window}")
    print("history (oldest first):")
    for d in past:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.issued_at))
        mode = "" if d.mode == "enforce" else " (shadow)"
        print(f"  {stamp}  {d.action:8} {d.rule:24}{mode} {_why(d)}")
    return 0


async def _lift(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.core.ports import StorageError
    from enforcer.engine.policy import PolicyError, load_policy
    from enforcer.store.lift import lift_subject

    subject = parse_subject(args.subject)
    grace_s = parse_duration(args.grace)
    by = args.by or os.environ.get("USER") or getpass.getuser()
    if not args.reason.strip():
        raise UserError("--reason must say why")
    try:
        rules = [rule.name for rule in load_policy(settings.policy_file).rules]
    except PolicyError:
        rules = []  # the rule named in decision state is still cleared
    now = time.time()
    client = redis_client(settings, socket_timeout=settings.redis_timeout_s)
    try:
        cleared = await lift_subject(
            client,
            settings.redis_prefix,
            subject,
            rules,
            content_window_s=settings.content_window_s,
            lifted_at=now,
            grace_until=now + grace_s,
        )
    except StorageError as exc:
        raise UserError(f"not lifted, {exc}") from None
    finally:
        await client.aclose()
    decision = decision_log.lift_decision(subject, by, args.reason.strip(), now, grace_s)
    await decision_log.publish(settings.kafka_bootstrap, settings.decisions_topic, [decision])
    if args.json:
        emit({"lifted": decision.to_dict(), "evidence_keys_cleared": cleared})
    else:
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now + grace_s))
        print(
            f"lifted {subject.key} by {by}: {args.reason.strip()} "
            f"(grace until {until}, {cleared} evidence key(s) cleared)"
        )
    return 0


def _expiry(d: Decision, now: float) -> str:
    if d.expires_at is None:
        return "no expiry"
    left = d.expires_at - now
    return f"{left / 60:.0f}m left" if left >= 60 else f"{max(0, left):.0f}s left"


def _why(d: Decision) -> str:
    if d.lift is not None:
        return f"lifted by {d.lift.by}: {d.lift.reason}"
    return "; ".join(f"{r.signal}={r.value:g}>{r.threshold:g}" for r in d.reasons)
