"""The `enforcer` command: one subcommand per job, each a thin shell over a module."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from enforcer.core.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="enforcer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run the stream worker (Faust)")

    topics = sub.add_parser("topics", help="manage Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True)
    topics_sub.add_parser("apply", help="create or update the catalogue's topics (idempotent)")

    settings_cmd = sub.add_parser("settings", help="print the settings in force")
    settings_cmd.add_argument("--markdown", action="store_true", help="the README's settings table")

    metrics_cmd = sub.add_parser("metrics", help="list the Prometheus metrics the worker exports")
    metrics_cmd.add_argument("--markdown", action="store_true", help="the README's metrics table")

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate policy files; exit 1 on any error")
    check.add_argument("files", nargs="+")
    diff = policy_sub.add_parser("diff", help="what-if: backtest two policies on the same events")
    diff.add_argument("--events", required=True, type=Path, help="gateway_event.v1 JSON lines")
    diff.add_argument("old", type=Path, help="the policy in force")
    diff.add_argument("new", type=Path, help="the policy you would roll out")
    diff.add_argument("--html", type=Path, default=None, help="also write a self-contained report")
    diff.add_argument("--examples", type=int, default=20, help="subjects listed on the console")

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
    gateway_sub.add_parser("serve", help="run the check sidecar (ENFORCER_SIDECAR_* settings)")

    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"enforcer: {exc}", file=sys.stderr)
        return 2

    if args.command == "worker":
        from enforcer.engine.policy import PolicyError
        from enforcer.worker.app import run_worker

        try:
            run_worker(settings)
        except PolicyError as exc:
            # At start-up there is no last good policy to keep running: refuse to start.
            print(f"enforcer worker: policy refused, not starting:\n{exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "topics":
        from enforcer.core.topics import apply_topics

        for line in asyncio.run(apply_topics(settings)) or ["topics up to date"]:
            print(line)
        return 0
    if args.command == "settings":
        if args.markdown:
            print(Settings.markdown_table())
        else:
            # Secrets and URL passwords are masked: this output ends up in tickets and chats.
            for name, value in settings.redacted().items():
                print(f"{name}={value}")
        return 0
    if args.command == "metrics":
        from enforcer.worker import metrics

        if args.markdown:
            print(metrics.markdown_table())
        else:
            for metric in metrics.all_metrics():
                print(f"{metrics.exported_name(metric)} ({metric._type}): {metric._documentation}")
        return 0
    if args.command == "policy" and args.policy_command == "diff":
        from enforcer.tools.policy_diff import run_command as policy_diff

        return asyncio.run(policy_diff(settings, args))
    if args.command == "policy":
        return _policy_check(args.files)
    if args.command == "demo":
        from enforcer.tools.demo import run_demo

        return asyncio.run(run_demo(settings, seconds=args.seconds, seed=args.seed))
    if args.command == "bench":
        from enforcer.tools.bench import run_benches

        return asyncio.run(run_benches(settings, args.only, args.quick, args.json))
    if args.command == "gateway":
        from enforcer.gateway.settings import SidecarSettings
        from enforcer.gateway.sidecar import run_sidecar

        try:
            sidecar_settings = SidecarSettings.from_env()
        except SettingsError as exc:
            print(f"enforcer: {exc}", file=sys.stderr)
            return 2
        return run_sidecar(settings, sidecar_settings)
    if args.command == "simulate":
        return asyncio.run(_simulate(settings, args))
    if args.command == "backtest":
        return asyncio.run(_backtest(settings, args))
    parser.error(f"unknown command {args.command}")
    return 2


async def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    import time

    from enforcer.tools.simulate import SimulationConfig, generate, write

    if not (args.out or args.produce):
        print("enforcer simulate: give --out FILE, --produce, or both", file=sys.stderr)
        return 2
    duration = args.minutes * 60
    start = args.start_ts
    if start is None:
        start = time.time() - duration if args.produce else SimulationConfig.start_ts
    events, labels = generate(
        SimulationConfig(duration_s=duration, start_ts=start, seed=args.seed, scale=args.scale)
    )
    if args.out:
        labels_path = args.labels or args.out.with_suffix(".labels.json")
        write(events, labels, args.out, labels_path)
        print(
            f"wrote {len(events)} events to {args.out} "
            f"and labels of {len(labels)} keys to {labels_path}"
        )
    if args.produce:
        import orjson
        from aiokafka import AIOKafkaProducer

        from enforcer.core.connections import kafka_options

        producer = AIOKafkaProducer(**kafka_options(settings), linger_ms=20)
        await producer.start()
        try:
            began = time.monotonic()
            for i, doc in enumerate(events):
                await producer.send(
                    settings.events_topic, key=doc["api_key"].encode(), value=orjson.dumps(doc)
                )
                ahead = i / args.rate - (time.monotonic() - began)
                if ahead > 0.05:
                    await asyncio.sleep(ahead)
            await producer.flush()
        finally:
            await producer.stop()
        print(
            f"produced {len(events)} events to {settings.events_topic} "
            f"in {time.monotonic() - began:.1f}s"
        )
    return 0


async def _backtest(settings: Settings, args: argparse.Namespace) -> int:
    import contextlib

    import orjson

    from enforcer.engine.policy import PolicyError, load_policy
    from enforcer.tools.backtest import format_report, load_labels, run_backtest, score

    try:
        policy = load_policy(args.policy or settings.policy_file)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(args.out.open("w")) if args.out else None
        report = await run_backtest(settings, policy, args.events, out)
    scores = score(report, load_labels(args.labels)) if args.labels else None
    if args.json:
        print(
            orjson.dumps(
                {"events_per_s": report.events_per_s, "lines": report.lines, "scores": scores}
            ).decode()
        )
    else:
        print(format_report(report, scores))
    return 0


def _policy_check(files: list[str]) -> int:
    from enforcer.engine.policy import PolicyError, load_policy

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
