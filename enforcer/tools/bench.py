"""`enforcer bench`: speed and latency figures, printed, compared as ratios within one run.

Each benchmark is an async function of the settings that returns printable lines, named in
BENCHES. They run against the real local stack, in isolated namespaces and topics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from enforcer.core.settings import Settings
from enforcer.tools.bench_gateway import sidecar_bench
from enforcer.tools.bench_pipeline import backtest_bench, features_bench
from enforcer.tools.interpreter import interpreter

Bench = Callable[[Settings], Awaitable[list[str]]]
BENCHES: dict[str, Bench] = {
    "features": features_bench,
    "backtest": backtest_bench,
    "sidecar": sidecar_bench,
}


async def run_benches(settings: Settings, only: list[str] | None = None) -> int:
    names = only or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    print(f"== python {interpreter()}")
    for name in names:
        print(f"== {name}")
        for line in await BENCHES[name](settings):
            print(f"  {line}")
    return 0
