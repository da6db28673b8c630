"""Benchmarks of the worker's own path: features per event, and backtest throughput.

The backtest runs the worker's pipeline on real Redis, so its events/s is the worker's
processing ceiling on this machine without Kafka in the way.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from enforcer.backtest import run_backtest
from enforcer.bench import register
from enforcer.events import parse_event
from enforcer.features.request import features_of
from enforcer.policy import load_policy
from enforcer.settings import Settings
from enforcer.simulate import SimulationConfig, generate, write


@register("features")
async def features_bench(settings: Settings) -> list[str]:
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
    n = len(raws)
    return [
        f"events            {n}",
        f"parse             {parse_s / n * 1e6:6.1f} us/event",
        f"features          {features_s / n * 1e6:6.1f} us/event "
        "(fingerprint, bands, elicitation, harvest)",
    ]


@register("backtest")
async def backtest_bench(settings: Settings) -> list[str]:
    minutes = 5
    events, _ = generate(SimulationConfig(duration_s=minutes * 60, seed=5))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        write(events, {}, path, Path(tmp) / "labels.json")
        policy = load_policy(settings.policy_file)
        before = await _script_usec(settings)
        report = await run_backtest(settings, policy, path)
        redis_us = (await _script_usec(settings) - before) / max(report.lines, 1)
    python_us = 1e6 / report.events_per_s - redis_us if report.events_per_s else 0.0
    return [
        f"events            {report.lines} ({minutes} simulated minutes)",
        f"policy            {policy.version_tag}",
        f"throughput        {report.events_per_s:,.0f} events/s (target >= 10,000)",
        f"redis scripts     {redis_us:6.1f} us/event of Redis CPU (server-side EVALSHA time)",
        f"other             {python_us:6.1f} us/event of wall time outside Redis scripts",
        f"decisions         {len(report.decisions)}",
    ]


async def _script_usec(settings: Settings) -> float:
    """Redis' own count of microseconds spent in scripts: the server's share of a batch."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))
