"""Benchmarks of the worker's own path: features per event, and backtest throughput.

The backtest runs the worker's pipeline on real Redis, so its events/s is the worker's
processing ceiling on this machine without Kafka in the way.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from enforcer.core.events import parse_event
from enforcer.core.settings import Settings
from enforcer.engine.features.request import Sketches, features_of
from enforcer.engine.policy import load_policy
from enforcer.tools.backtest import run_backtest
from enforcer.tools.bench.run import BenchRun
from enforcer.tools.simulate import SimulationConfig, generate, write


async def features_bench(run: BenchRun) -> list[str]:
    events, _ = generate(SimulationConfig(duration_s=60, seed=3))
    import orjson

    raws = [orjson.dumps(e) for e in events[:20000]]
    started = time.perf_counter()
    parsed = [parse_event(r) for r in raws]
    parse_s = time.perf_counter() - started
    started = time.perf_counter()
    for ev in parsed:
        features_of(ev)
    features_s = time.perf_counter() - started
    started = time.perf_counter()
    for ev in parsed:
        features_of(ev, Sketches.NONE)
    no_bands_s = time.perf_counter() - started
    n = len(raws)
    return [
        f"events            {n}",
        f"parse             {parse_s / n * 1e6:6.1f} us/event",
        f"features          {features_s / n * 1e6:6.1f} us/event "
        "(fingerprint, bands, elicitation, harvest)",
        f"without bands     {no_bands_s / n * 1e6:6.1f} us/event "
        "(when no rule reads template shares, as in the default policy)",
    ]


async def backtest_bench(run: BenchRun) -> list[str]:
    settings = run.settings
    minutes = 5
    events, _ = generate(SimulationConfig(duration_s=minutes * 60, seed=5))
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        write(events, {}, path, Path(tmp) / "labels.json")
        policy = load_policy(settings.policy_file)
        lines.append(f"events            {len(events)} ({minutes} simulated minutes)")
        lines.append(f"policy            {policy.version_tag}")
        for helper in (True, False):
            before = await _cpu(settings)
            report = await run_backtest(settings, policy, path, helper_process=helper)
            after = await _cpu(settings)
            n = max(report.lines, 1)
            main, child, redis_cpu, scripts = (
                (b - a) / n * 1e6 for a, b in zip(before, after, strict=True)
            )
            if helper:
                lines += [
                    f"throughput        {report.events_per_s:,.0f} events/s (target >= 10,000), "
                    f"{1e6 / max(report.events_per_s, 1):.0f} us/event of wall time",
                    f"cpu per event     pipeline {main:.0f} us, parse+features helper {child:.0f}"
                    f" us, redis {redis_cpu:.0f} us (scripts {scripts:.0f}): "
                    f"{main + child + redis_cpu:.0f} us on 2 cores",
                    f"decisions         {len(report.decisions)}",
                ]
            else:
                lines.append(
                    f"no helper process {report.events_per_s:,.0f} events/s "
                    f"(pipeline {main:.0f} us/event of cpu, redis {redis_cpu:.0f})"
                )
    return lines


async def _cpu(settings: Settings) -> tuple[float, float, float, float]:
    """CPU seconds so far: this process, its finished children (the backtest's helper is
    joined when the backtest ends), the Redis server, and Redis' time inside scripts."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        cpu = await client.info("cpu")
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        own.ru_utime + own.ru_stime,
        children.ru_utime + children.ru_stime,
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        float(stats.get("cmdstat_evalsha", {}).get("usec", 0)) / 1e6,
    )
