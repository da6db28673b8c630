"""How every command reports: one JSON document or lines, errors as one line, progress on a
terminal only.

Exit codes (listed in the README): 0 done; 1 the command ran and found a problem (a policy
file with errors, a subject with no decision); 2 a usage or input error, said in one line on
stderr without a traceback (a missing file, a bad setting, every input line bad).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import orjson

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, exit 2."""


def emit(doc: Any) -> None:
    """One JSON document on stdout."""
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


class Progress:
    """A one-line counter on stderr, redrawn at most a few times a second, only when stderr
    is a terminal: a log file or a pipe gets nothing."""

    def __init__(self, label: str, total: float | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label = label
        self.total = total
        self._drawn = 0.0
        self._started = time.monotonic()

    def update(self, done: float, unit: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn < 0.2:
            return
        self._drawn = now
        share = f" {100 * done / self.total:5.1f}%" if self.total else ""
        elapsed = now - self._started
        self.stream.write(f"\r{self.label}: {done:,.0f}{unit}{share} ({elapsed:.0f}s)\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
