"""Which Python build runs a figure: reports print it, since builds differ in speed."""

from __future__ import annotations

import platform
from pathlib import Path


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
