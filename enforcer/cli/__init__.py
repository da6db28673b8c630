"""The `enforcer` command: one subcommand per job, each a thin shell over a module."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from enforcer import __version__
from enforcer.cli import commands, decisions
from enforcer.cli import policy as policy_cli
from enforcer.cli.output import EXIT_USAGE, UserError
from enforcer.core.settings import Settings, SettingsError

_SETTINGS_HINT = (
    "Configured by ENFORCER_* environment variables; `enforcer settings` prints those in force "
    "and README.md lists them all."
)
_SIDECAR_HINT = (
    "Configured by ENFORCER_SIDECAR_* (the sidecar's own, listed in README.md) and the shared "
    "ENFORCER_* variables; `enforcer settings` prints the shared ones in force."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enforcer",
        description=__doc__,
        epilog="Exit codes: 0 done, 1 a problem found (policy errors, no such decision), "
        "2 a usage or input error.",
    )
    parser.add_argument("--version", action="version", version=f"enforcer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser(
        "worker", help="run the stream worker (Faust)", description="Run the stream worker.",
        epilog=_SETTINGS_HINT,
    )  # fmt: skip

    topics = sub.add_parser("topics", help="manage Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True)
    apply = topics_sub.add_parser(
        "apply",
        help="create or update the catalogue's topics (idempotent)",
        description="Create or update the topics of topics/catalogue.yaml.",
        epilog=_SETTINGS_HINT,
    )
    apply.add_argument("--json", action="store_true", help="the changes as JSON")

    settings_cmd = sub.add_parser("settings", help="print the settings in force")
    settings_cmd.add_argument("--markdown", action="store_true", help="the README's settings table")
    settings_cmd.add_argument("--json", action="store_true", help="the settings as JSON")

    metrics_cmd = sub.add_parser("metrics", help="list the Prometheus metrics the worker exports")
    metrics_cmd.add_argument("--markdown", action="store_true", help="the README's metrics table")
    metrics_cmd.add_argument("--json", action="store_true", help="the metrics as JSON")

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate policy files; exit 1 on any error")
    check.add_argument("files", nargs="+")
    check.add_argument("--json", action="store_true", help="per file: ok, version, issues")
    policy_cli.add_diff_parser(policy_sub)

    decisions.add_parser(sub)

    demo = sub.add_parser("demo", help="replay simulated traffic through a live worker")
    demo.add_argument("--seconds", type=float, default=120.0, help="event time to simulate")
    demo.add_argument("--seed", type=int, default=11)

    simulate = sub.add_parser(
        "simulate", help="write (or produce) labeled simulated gateway traffic"
    )
    simulate.add_argument("--minutes", type=float, default=30.0, help="event time to simulate")
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument(
        "--scale", type=float, default=1.0, help="multiplies population sizes and rates"
    )
    simulate.add_argument(
        "--start-ts", type=float, default=None, help="first event time (default: a fixed date)"
    )
    simulate.add_argument("--out", type=Path, help="write gateway_event.v1 JSON lines here")
    simulate.add_argument("--labels", type=Path, help="write the ground-truth labels (JSON) here")
    simulate.add_argument(
        "--produce",
        action="store_true",
        help="produce to ENFORCER_EVENTS_TOPIC, stamped to end now",
    )
    simulate.add_argument("--rate", type=float, default=2000.0, help="events/s when producing")
    simulate.add_argument("--json", action="store_true", help="what was written, as JSON")

    backtest = sub.add_parser("backtest", help="replay a JSON-lines file through the pipeline")
    backtest.add_argument("--events", required=True, type=Path, help="gateway_event.v1 JSON lines")
    backtest.add_argument("--policy", type=Path, default=None, help="default: ENFORCER_POLICY_FILE")
    backtest.add_argument(
        "--out", type=Path, default=None, help="write decision.v1 JSON lines here"
    )
    backtest.add_argument(
        "--labels", type=Path, default=None, help="labels JSON from `enforcer simulate`"
    )
    backtest.add_argument("--json", action="store_true", help="print the figures as JSON")

    bench = sub.add_parser("bench", help="print speed and latency figures on the local stack")
    bench.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    bench.add_argument(
        "--quick", action="store_true", help="the live path on a small stream, under 2 minutes"
    )
    bench.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")

    gateway = sub.add_parser("gateway", help="gateway integration")
    gateway_sub = gateway.add_subparsers(dest="gateway_command", required=True)
    gateway_sub.add_parser(
        "serve",
        help="run the check sidecar (ENFORCER_SIDECAR_* settings)",
        description="Run the check sidecar nginx's auth_request asks.",
        epilog=_SIDECAR_HINT,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return _dispatch(settings, args)
    except (UserError, SettingsError) as exc:
        print(f"enforcer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"enforcer: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    command = args.command
    if command == "worker":
        return commands.worker(settings)
    if command == "topics":
        return commands.topics_apply(settings, args)
    if command == "settings":
        return commands.show_settings(settings, args)
    if command == "metrics":
        return commands.show_metrics(args)
    if command == "policy" and args.policy_command == "diff":
        return asyncio.run(policy_cli.diff(settings, args))
    if command == "policy":
        return commands.policy_check(args.files, args.json)
    if command == "decisions":
        return asyncio.run(decisions.run(settings, args))
    if command == "demo":
        from enforcer.tools.demo import run_demo

        return asyncio.run(run_demo(settings, seconds=args.seconds, seed=args.seed))
    if command == "bench":
        from enforcer.tools.bench import run_benches

        return asyncio.run(run_benches(settings, args.only, args.quick, args.json))
    if command == "gateway":
        return commands.gateway_serve(settings)
    if command == "simulate":
        return asyncio.run(commands.simulate(settings, args))
    if command == "backtest":
        return asyncio.run(commands.backtest(settings, args))
    raise UserError(f"unknown command {command}")
