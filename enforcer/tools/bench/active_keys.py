"""Throughput against the number of active api_keys: the same events, their keys rewritten
onto exactly N keys (event i to key i mod N, four keys to an account), replayed through the
backtest's engine on the same Redis. The content, timing and rules are the stream's own; the
number of subjects differs between the points, and with it two costs besides the Redis
working set, which each point reports beside its rate:

- window states written per event. The engine writes a subject's state once per batch
  however many of the batch's events it holds: at 10^3 keys a 2,000-event batch holds each
  key twice and each account eight times, at 10^5 each key once;
- decisions. A key whose few requests are a slice of everyone's is judged on its own, like a
  key-churning attacker's, and the policy decides per key.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from enforcer.core.settings import Settings
from enforcer.engine.policy import load_policy
from enforcer.tools.backtest import run_backtest

FULL_POINTS = (1_000, 10_000, 100_000)
QUICK_POINTS = (1_000, 10_000)
# The points are run in turns, this many times, and each keeps its fastest run: one pass in
# point order put a slow minute of the machine on whichever point it fell, and printed
# spreads of 0.75 and 0.85 for the same code (three turns in one period, fastest of each: 0.74).
ROUNDS = 2
# The backtest's batch size, over which states_per_event counts distinct subjects.
BATCH = 2_000


def rekeyed(docs: list[dict[str, Any]], keys: int) -> list[bytes]:
    lines = []
    for i, doc in enumerate(docs):
        k = i % keys
        lines.append(
            orjson.dumps(dict(doc, api_key=f"k_bench{k:06d}", account_id=f"a_bench{k // 4:06d}"))
        )
    return lines


def states_per_event(n_events: int, keys: int) -> float:
    """Distinct api_keys and accounts per event within each BATCH of the rekeyed stream: the
    key and account window states one event costs."""
    states = 0
    for first in range(0, n_events, BATCH):
        at = range(first, min(first + BATCH, n_events))
        states += len({i % keys for i in at}) + len({(i % keys) // 4 for i in at})
    return states / max(n_events, 1)


class Point(NamedTuple):
    events_per_s: float
    decisions: int
    states_per_event: float


async def by_active_keys(
    settings: Settings,
    docs: list[dict[str, Any]],
    points: tuple[int, ...],
    rounds: int = ROUNDS,
) -> dict[str, Point]:
    policy = load_policy(settings.policy_file)
    out: dict[str, Point] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for keys in points:
            paths[keys] = Path(tmp) / f"events-{keys}.jsonl"
            paths[keys].write_bytes(b"\n".join(rekeyed(docs, keys)) + b"\n")
        states = {keys: states_per_event(len(docs), keys) for keys in points}
        for _ in range(rounds):
            for keys in points:
                report = await run_backtest(settings, policy, paths[keys], batch_size=BATCH)
                best = out.get(str(keys))
                if best is None or report.events_per_s > best.events_per_s:
                    out[str(keys)] = Point(report.events_per_s, len(report.decisions), states[keys])
    return out
