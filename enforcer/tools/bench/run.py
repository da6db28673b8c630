"""What a benchmark is: an async function of a BenchRun that returns printable lines and may
record named figures in `run.figures` (written by `--json`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from enforcer.core.settings import Settings


@dataclass
class BenchRun:
    settings: Settings
    # A smaller stream and fewer points: the whole run in under two minutes, for CI.
    quick: bool = False
    figures: dict[str, Any] = field(default_factory=dict)


Bench = Callable[[BenchRun], Awaitable[list[str]]]
