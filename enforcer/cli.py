"""The `enforcer` command: one subcommand per job, each a thin shell over a module."""

from __future__ import annotations

import argparse
import asyncio
import sys

from enforcer.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="enforcer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run the stream worker (Faust)")

    topics = sub.add_parser("topics", help="manage Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True)
    topics_sub.add_parser("apply", help="create or update the catalogue's topics (idempotent)")

    settings_cmd = sub.add_parser("settings", help="print the settings in force")
    settings_cmd.add_argument("--markdown", action="store_true", help="the README's settings table")

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate policy files; exit 1 on any error")
    check.add_argument("files", nargs="+")

    demo = sub.add_parser("demo", help="replay simulated traffic through a live worker")
    demo.add_argument("--seconds", type=float, default=120.0, help="event time to simulate")
    demo.add_argument("--seed", type=int, default=11)

    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"enforcer: {exc}", file=sys.stderr)
        return 2

    if args.command == "worker":
        from enforcer.app import run_worker

        run_worker(settings)
        return 0
    if args.command == "topics":
        from enforcer.topics import apply_topics

        for line in asyncio.run(apply_topics(settings)) or ["topics up to date"]:
            print(line)
        return 0
    if args.command == "settings":
        if args.markdown:
            print(Settings.markdown_table())
        else:
            for name in Settings.__dataclass_fields__:
                print(f"ENFORCER_{name.upper()}={getattr(settings, name)}")
        return 0
    if args.command == "policy":
        return _policy_check(args.files)
    if args.command == "demo":
        from enforcer.demo import run_demo

        return asyncio.run(run_demo(settings, seconds=args.seconds, seed=args.seed))
    parser.error(f"unknown command {args.command}")
    return 2


def _policy_check(files: list[str]) -> int:
    from enforcer.policy import PolicyError, load_policy

    failed = False
    for path in files:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            failed = True
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            continue
        print(f"{path}: ok ({policy.version_tag}, {len(policy.rules)} rules)")
    return 1 if failed else 0
