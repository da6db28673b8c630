"""The shells of the commands that need more than a line in the dispatcher."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from enforcer.cli.output import EXIT_FOUND, EXIT_OK, EXIT_USAGE, Progress, UserError, emit
from enforcer.core.settings import Settings


def worker(settings: Settings) -> int:
    from enforcer.engine.policy import PolicyError
    from enforcer.worker.app import run_worker

    try:
        run_worker(settings)
    except PolicyError as exc:
        # At start-up there is no last good policy to keep running: refuse to start.
        print(f"enforcer worker: policy refused, not starting:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def gateway_serve(settings: Settings) -> int:
    from enforcer.gateway.settings import SidecarSettings
    from enforcer.gateway.sidecar import run_sidecar

    return run_sidecar(settings, SidecarSettings.from_env())


def topics_apply(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.core.topics import apply_topics

    done = asyncio.run(apply_topics(settings))
    if args.json:
        emit({"changes": done})
    else:
        for line in done or ["topics up to date"]:
            print(line)
    return EXIT_OK


def show_settings(settings: Settings, args: argparse.Namespace) -> int:
    if args.markdown:
        print(Settings.markdown_table())
    elif args.json:
        emit(settings.redacted())
    else:
        # Secrets and URL passwords are masked: this output ends up in tickets and chats.
        for name, value in settings.redacted().items():
            print(f"{name}={value}")
    return EXIT_OK


def show_metrics(args: argparse.Namespace) -> int:
    from enforcer.worker import metrics

    if args.markdown:
        print(metrics.markdown_table())
        return EXIT_OK
    rows = [
        {"name": metrics.exported_name(m), "type": m._type, "help": m._documentation}
        for m in metrics.all_metrics()
    ]
    if args.json:
        emit({"metrics": rows})
    else:
        for row in rows:
            print(f"{row['name']} ({row['type']}): {row['help']}")
    return EXIT_OK


def policy_check(files: list[str], as_json: bool = False) -> int:
    from enforcer.engine.policy import PolicyError, load_policy

    failed = False
    results = []
    for path in files:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            failed = True
            results.append({"file": path, "ok": False, "issues": [str(i) for i in exc.issues]})
            if not as_json:
                for issue in exc.issues:
                    print(issue, file=sys.stderr)
            continue
        results.append(
            {"file": path, "ok": True, "version": policy.version_tag, "rules": len(policy.rules)}
        )
        if not as_json:
            print(f"{path}: ok ({policy.version_tag}, {len(policy.rules)} rules)")
    if as_json:
        emit({"files": results})
    return EXIT_FOUND if failed else EXIT_OK


async def simulate(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.tools.simulate import SimulationConfig, generate, write

    if not (args.out or args.produce):
        raise UserError("simulate: give --out FILE, --produce, or both")
    duration = args.minutes * 60
    start = args.start_ts
    if start is None:
        start = time.time() - duration if args.produce else SimulationConfig.start_ts
    events, labels = generate(
        SimulationConfig(duration_s=duration, start_ts=start, seed=args.seed, scale=args.scale)
    )
    report: dict[str, object] = {"events": len(events), "keys": len(labels)}
    if args.out:
        labels_path = args.labels or args.out.with_suffix(".labels.json")
        write(events, labels, args.out, labels_path)
        report.update(out=str(args.out), labels=str(labels_path))
        if not args.json:
            print(
                f"wrote {len(events)} events to {args.out} "
                f"and labels of {len(labels)} keys to {labels_path}"
            )
    if args.produce:
        elapsed = await _produce(settings, events, args.rate)
        report.update(produced=len(events), topic=settings.events_topic, seconds=elapsed)
        if not args.json:
            print(f"produced {len(events)} events to {settings.events_topic} in {elapsed:.1f}s")
    if args.json:
        emit(report)
    return EXIT_OK


async def _produce(settings: Settings, events: list[dict[str, Any]], rate: float) -> float:
    from aiokafka import AIOKafkaProducer

    from enforcer.core.connections import kafka_options

    producer = AIOKafkaProducer(**kafka_options(settings), linger_ms=20)
    progress = Progress("produced", total=len(events))
    await producer.start()
    try:
        began = time.monotonic()
        for i, doc in enumerate(events):
            await producer.send(
                settings.events_topic, key=doc["api_key"].encode(), value=orjson.dumps(doc)
            )
            progress.update(i + 1)
            ahead = i / rate - (time.monotonic() - began)
            if ahead > 0.05:
                await asyncio.sleep(ahead)
        await producer.flush()
        return time.monotonic() - began
    finally:
        progress.close()
        await producer.stop()


async def backtest(settings: Settings, args: argparse.Namespace) -> int:
    import contextlib

    from enforcer.engine.policy import PolicyError, load_policy
    from enforcer.tools.backtest import format_report, load_labels, run_backtest, score

    for path, flag in ((args.events, "--events"), (args.labels, "--labels")):
        if path is not None and not path.is_file():
            raise UserError(f"backtest: {flag} {path}: no such file")
    try:
        policy = load_policy(args.policy or settings.policy_file)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    labels = load_labels(args.labels) if args.labels else None
    progress = Progress("lines replayed")
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(args.out.open("w")) if args.out else None
        try:
            report = await run_backtest(
                settings, policy, args.events, out, progress=progress.update
            )
        finally:
            progress.close()
    scores = score(report, labels) if labels is not None else None
    bad = sum(report.bad_lines.values())
    if args.json:
        emit(
            {
                "events_per_s": report.events_per_s,
                "lines": report.lines,
                "bad_lines": dict(report.bad_lines),
                "scores": scores,
            }
        )
    else:
        print(format_report(report, scores))
    if report.lines == 0 or bad >= report.lines:
        print(
            f"enforcer: backtest: no good event in {args.events} "
            f"({report.lines} line(s), {bad} bad)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK
