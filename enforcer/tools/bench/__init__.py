"""`enforcer bench`: speed and latency figures, printed, compared as ratios within one run.

Each benchmark is an async function of a BenchRun that returns printable lines and may record
named figures in `run.figures` (written by `--json`); BENCHES names them. They run against
the real local stack, in isolated namespaces and topics, removed afterwards.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from enforcer.core.settings import Settings
from enforcer.tools.bench.live import live_bench
from enforcer.tools.bench.pipeline import backtest_bench, features_bench
from enforcer.tools.bench.run import Bench, BenchRun
from enforcer.tools.bench.sidecar import sidecar_bench
from enforcer.tools.interpreter import interpreter

BENCHES: dict[str, Bench] = {
    "features": features_bench,
    "backtest": backtest_bench,
    "sidecar": sidecar_bench,
    "live": live_bench,
}
# What a plain `enforcer bench` runs; `--quick` runs the live path only.
QUICK_BENCHES = ("live",)


async def run_benches(
    settings: Settings,
    only: list[str] | None = None,
    quick: bool = False,
    json_path: Path | None = None,
) -> int:
    names = only or (list(QUICK_BENCHES) if quick else list(BENCHES))
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    run = BenchRun(settings, quick=quick)
    run.figures["interpreter"] = interpreter()
    print(f"== python {run.figures['interpreter']}", flush=True)
    for name in names:
        print(f"== {name}", flush=True)
        for line in await BENCHES[name](run):
            print(f"  {line}", flush=True)
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(run.figures, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"figures written to {json_path}")
    return 0
