"""`enforcer bench --only live`: the live path measured through the real local stack, in one
run, on one simulated stream, with the issue's targets judged as ratios within the run.

Order matters on a 2-core machine: every measurement runs alone, and the worker whose drain is
timed is the one whose Redis namespace is then weighed.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from enforcer.tools.bench import active_keys as active_keys_bench
from enforcer.tools.bench import latency as latency_bench
from enforcer.tools.bench import memory, stack, throughput
from enforcer.tools.bench.run import BenchRun

# How many events the naive limiter takes: two Redis round trips an event make it the slowest
# path by far, and its rate is flat after the first thousand events.
NAIVE_EVENTS = (5_000, 50_000)
LATENCY_SECONDS = (8.0, 20.0)
# A full run also measures below the target's rate, to show where queueing sets in.
LOWER_RATES = (1_000.0, 2_500.0)
LOWER_RATE_SECONDS = 30.0

KEYS = (
    "ceiling_events_per_s",
    "framework_events_per_s",
    "enforcer_events_per_s",
    "backtest_events_per_s",
    "naive_events_per_s",
    "p50_ms_at_5k",
    "p99_ms_at_5k",
    "redis_round_trips_per_event",
    "redis_bytes_per_key",
    "events_per_s_by_active_keys",
    "latency_ms_by_rate",
)


class Target(NamedTuple):
    name: str
    holds: bool
    measured: str


def targets(f: dict[str, Any]) -> list[Target]:
    """The issue's targets, each judged on this run's own figures."""
    by_keys = list(f["events_per_s_by_active_keys"].values())
    spread = min(by_keys) / max(by_keys) if by_keys and max(by_keys) > 0 else 0.0
    vs_backtest = f["enforcer_events_per_s"] / max(f["backtest_events_per_s"], 1e-9)
    vs_naive = f["enforcer_events_per_s"] / max(f["naive_events_per_s"], 1e-9)
    return [
        Target("worker >= 0.7x the backtest", vs_backtest >= 0.7, f"{vs_backtest:.2f}x"),
        Target("worker >= 4x the naive limiter", vs_naive >= 4, f"{vs_naive:.2f}x"),
        Target("p99 <= 50 ms at 5,000/s", f["p99_ms_at_5k"] <= 50, f"{f['p99_ms_at_5k']:.1f} ms"),
        Target(
            "p99 <= 25 ms at 5,000/s (stretch)",
            f["p99_ms_at_5k"] <= 25,
            f"{f['p99_ms_at_5k']:.1f} ms",
        ),
        Target(
            "<= 0.02 Redis round trips per event",
            f["redis_round_trips_per_event"] <= 0.02,
            f"{f['redis_round_trips_per_event']:.4f}",
        ),
        Target(
            "<= 512 bytes of Redis per active api_key",
            f["redis_bytes_per_key"] <= 512,
            f"{f['redis_bytes_per_key']:.0f} B",
        ),
        Target(
            "throughput within 20% across active keys",
            spread >= 0.8,
            f"slowest/fastest {spread:.2f}",
        ),
    ]


async def live_bench(run: BenchRun) -> list[str]:
    settings, quick, f = run.settings, run.quick, run.figures
    docs = stack.stream(quick)
    f.update(
        quick=quick,
        stream_events=len(docs),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        cpus=os.cpu_count(),
        load_average_1m=os.getloadavg()[0],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))

        async with stack.isolated(settings, "live") as s:
            expected = await stack.produce(s, docs)
            f["ceiling_events_per_s"] = await throughput.ceiling(s, expected)
            f["framework_events_per_s"] = await throughput.framework(s, expected)
            drain = await throughput.enforcer_drain(s, expected)
            try:
                weighed = await memory.footprint(s, s.redis_prefix)
            finally:
                drain.worker.stop()
        counted = max(drain.events, 1)
        f["enforcer_events_per_s"] = drain.events_per_s
        f["redis_round_trips_per_event"] = drain.round_trips / counted
        f["redis_commands_per_event"] = drain.commands / counted
        f["redis_bytes_per_key"] = weighed.bytes_per_key
        f["redis_namespace_bytes_per_key"] = weighed.namespace_bytes_per_key
        f["active_api_keys"] = weighed.api_keys

        f["backtest_events_per_s"] = await throughput.backtest(settings, path)
        naive_rate, naive_n = await throughput.naive(settings, path, NAIVE_EVENTS[not quick])
        f["naive_events_per_s"] = naive_rate
        f["naive_events"] = naive_n

    async with stack.isolated(settings, "latency") as s:
        measured = await latency_bench.at_steady_rate(s, docs, LATENCY_SECONDS[not quick])
    f["p50_ms_at_5k"] = measured.p50_ms
    f["p99_ms_at_5k"] = measured.p99_ms
    f["latency_decisions"] = measured.decisions
    f["latency_rate_achieved"] = measured.achieved_rate
    f["redis_cpu_us_per_event_at_5k"] = measured.redis_cpu_us_per_event
    f["redis_rewrite_cpu_us_per_event_at_5k"] = measured.redis_rewrite_cpu_us_per_event
    by_rate = {f"{latency_bench.RATE:.0f}": [measured.p50_ms, measured.p99_ms]}
    for rate in () if quick else LOWER_RATES:
        async with stack.isolated(settings, f"latency-{rate:.0f}") as s:
            lower = await latency_bench.at_steady_rate(s, docs, LOWER_RATE_SECONDS, rate)
        by_rate[f"{rate:.0f}"] = [lower.p50_ms, lower.p99_ms]
    f["latency_ms_by_rate"] = dict(sorted(by_rate.items(), key=lambda kv: float(kv[0])))

    points = active_keys_bench.QUICK_POINTS if quick else active_keys_bench.FULL_POINTS
    by_keys = await active_keys_bench.by_active_keys(settings, docs, points)
    f["events_per_s_by_active_keys"] = {k: p.events_per_s for k, p in by_keys.items()}
    f["decisions_by_active_keys"] = {k: p.decisions for k, p in by_keys.items()}
    f["window_states_per_event_by_active_keys"] = {
        k: round(p.states_per_event, 3) for k, p in by_keys.items()
    }
    judged = targets(f)
    f["targets"] = {t.name: t.holds for t in judged}
    return table(f, judged)


def table(f: dict[str, Any], judged: list[Target]) -> list[str]:
    lines = [
        f"stream            {f['stream_events']:,} simulated events"
        f"{' (quick)' if f['quick'] else ''}; load average {f['load_average_1m']:.1f}"
        f" on {f['cpus']} cpus",
        "path                                   events/s",
        f"aiokafka getmany passthrough      {f['ceiling_events_per_s']:>12,.0f}",
        f"faust agent doing nothing         {f['framework_events_per_s']:>12,.0f}",
        f"enforcer worker, backlog drain    {f['enforcer_events_per_s']:>12,.0f}",
        f"enforcer backtest                 {f['backtest_events_per_s']:>12,.0f}",
        f"limits moving window, key+account {f['naive_events_per_s']:>12,.0f}"
        f"  ({f['naive_events']:,} events)",
        f"event to decision at 5,000/s      p50 {f['p50_ms_at_5k']:.1f} ms, "
        f"p99 {f['p99_ms_at_5k']:.1f} ms ({f['latency_decisions']:,} decisions, "
        f"{f['latency_rate_achieved']:,.0f} events/s sent)",
        "p50 / p99 by rate                 "
        + ", ".join(
            f"{float(r):,.0f}/s: {p50:.0f} / {p99:.0f} ms"
            for r, (p50, p99) in f["latency_ms_by_rate"].items()
        ),
        f"redis per event                   {f['redis_round_trips_per_event']:.4f} round trips "
        f"(worker's own count), {f['redis_commands_per_event']:.3f} commands "
        "(server commandstats, every client)",
        f"redis cpu at 5,000/s              {f['redis_cpu_us_per_event_at_5k']:.1f} us per event"
        f" (its own process), {f['redis_rewrite_cpu_us_per_event_at_5k']:.1f} us"
        " (its append-only file rewrites)",
        f"redis per active api_key          {f['redis_bytes_per_key']:.0f} B of its own keys, "
        f"{f['redis_namespace_bytes_per_key']:.0f} B of the whole namespace "
        f"({f['active_api_keys']:,} keys)",
        "by active api_keys                "
        + ", ".join(
            f"{int(k):,}: {v:,.0f}/s ({f['window_states_per_event_by_active_keys'][k]:.2f}"
            f" states/event, {f['decisions_by_active_keys'][k]:,} decisions)"
            for k, v in f["events_per_s_by_active_keys"].items()
        ),
        "targets",
    ]
    lines += [f"  {'holds' if t.holds else 'MISSED':6} {t.name} ({t.measured})" for t in judged]
    return lines
