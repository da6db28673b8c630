"""`enforcer bench --quick --json F` on the real stack: every figure the issue names is written,
each a number in its own sane range. No timing thresholds: the machine is shared."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson

from enforcer.core.settings import Settings

from ..processes import ROOT, enforcer_env

RATES = (
    "ceiling_events_per_s",
    "framework_events_per_s",
    "enforcer_events_per_s",
    "backtest_events_per_s",
    "naive_events_per_s",
)


def test_quick_bench_writes_every_figure_of_the_live_path(
    isolated: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "enforcer", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=enforcer_env(isolated),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = orjson.loads(out.read_bytes())

    assert figures["stream_events"] > 10_000
    for name in RATES:
        assert math.isfinite(figures[name]) and figures[name] > 0, name
    # Reading the topic alone is faster than anything that does work on what it reads.
    assert figures["ceiling_events_per_s"] > figures["enforcer_events_per_s"]
    assert 0 < figures["p50_ms_at_5k"] <= figures["p99_ms_at_5k"] < 60_000
    assert figures["latency_decisions"] > 0
    assert figures["latency_ms_by_rate"]["5000"] == [
        figures["p50_ms_at_5k"],
        figures["p99_ms_at_5k"],
    ]
    assert 0 < figures["redis_round_trips_per_event"] < 10
    # Redis worked for the events sent at 5,000/s; its rewrites may or may not have run.
    assert 0 < figures["redis_cpu_us_per_event_at_5k"] < 10_000
    assert figures["redis_rewrite_cpu_us_per_event_at_5k"] >= 0
    assert 0 < figures["redis_bytes_per_key"] <= figures["redis_namespace_bytes_per_key"]
    by_keys = figures["events_per_s_by_active_keys"]
    assert set(by_keys) >= {"1000", "10000"}
    assert all(v > 0 for v in by_keys.values())
    # Each point says what else than the working set changed with the number of keys.
    states = figures["window_states_per_event_by_active_keys"]
    assert set(states) == set(by_keys) == set(figures["decisions_by_active_keys"])
    assert 0 < states["1000"] < states["10000"] <= 2
    assert set(figures["targets"]) and all(isinstance(v, bool) for v in figures["targets"].values())
    # The table names every target, held or missed.
    for name in figures["targets"]:
        assert name in done.stdout
