"""`enforcer bench`: speed and latency figures, printed, compared as ratios within one run.

Each benchmark is an async function of the settings that returns printable lines; register it
in BENCHES. They run against the real local stack, in isolated namespaces and topics.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable
from pathlib import Path

from enforcer.core.settings import Settings

Bench = Callable[[Settings], Awaitable[list[str]]]
BENCHES: dict[str, Bench] = {}


def register(name: str) -> Callable[[Bench], Bench]:
    def wrap(fn: Bench) -> Bench:
        BENCHES[name] = fn
        return fn

    return wrap


async def run_benches(settings: Settings, only: list[str] | None = None) -> int:
    # Importing the modules registers their benchmarks.
    import enforcer.tools.bench_gateway  # noqa: F401
    import enforcer.tools.bench_pipeline  # noqa: F401

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
