"""`enforcer bench`: speed and latency figures, printed, compared as ratios within one run.

Each benchmark is an async function of a BenchRun that returns printable lines and may record
named figures in `run.figures` (written by `--json`); register it in BENCHES. They run against
the real local stack, in isolated namespaces and topics, removed afterwards.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from enforcer.core.settings import Settings


@dataclass
class BenchRun:
    settings: Settings
    # A smaller stream and fewer points: the whole run in under two minutes, for CI.
    quick: bool = False
    figures: dict[str, Any] = field(default_factory=dict)


Bench = Callable[[BenchRun], Awaitable[list[str]]]
BENCHES: dict[str, Bench] = {}
# What a plain `enforcer bench` runs; `--quick` runs the live path only.
QUICK_BENCHES = ("live",)


def register(name: str) -> Callable[[Bench], Bench]:
    def wrap(fn: Bench) -> Bench:
        BENCHES[name] = fn
        return fn

    return wrap


async def run_benches(
    settings: Settings,
    only: list[str] | None = None,
    quick: bool = False,
    json_path: Path | None = None,
) -> int:
    # Importing the modules registers their benchmarks.
    import enforcer.tools.bench.live  # noqa: F401
    import enforcer.tools.bench.pipeline  # noqa: F401
    import enforcer.tools.bench.sidecar  # noqa: F401

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


def interpreter() -> str:
    """Which CPython build runs the figures: the same code needed about 30% more CPU per event
    on a source build without --enable-optimizations, running from a shared libpython, than on
    the distribution's static build (deploy/local/pick-python.sh). Figures from two builds are
    not comparable."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        linkage = "linkage unknown"
    else:
        linkage = "shared libpython" if "libpython" in maps else "static interpreter"
    return f"{platform.python_implementation()} {platform.python_version()}, {linkage}"
