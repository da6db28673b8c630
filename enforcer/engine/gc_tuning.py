"""Cyclic garbage collector settings for the event path.

A batch allocates hundreds of thousands of short-lived, acyclic tuples (events, features,
subjects, window sums) that reference counting frees on its own. With CPython's default
thresholds (700, 10, 10) the cyclic collector still runs every few events, and its older
generations walk every long-lived object: the store's cache of subject keys, a backtest's
per-key tallies. On a replay that was about a third of the pipeline process's CPU. Collections
stay on, only rarer: a reference cycle is still reclaimed, a few tens of thousands of
allocations later.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Allocations between young collections, and collections between older ones.
EVENT_PATH_THRESHOLDS = (50_000, 20, 100)


def tune_for_event_path() -> None:
    """For a process that does nothing but run the pipeline (the worker): objects that exist
    after start-up (modules, the policy, clients) are frozen out of every later collection."""
    gc.freeze()
    gc.set_threshold(*EVENT_PATH_THRESHOLDS)


@contextmanager
def tuned_for_event_path() -> Iterator[None]:
    """The same for the length of a block (a backtest inside a longer-lived process)."""
    before = gc.get_threshold()
    gc.set_threshold(*EVENT_PATH_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
