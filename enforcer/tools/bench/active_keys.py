"""Throughput against the number of active api_keys: the same events, their keys rewritten
onto exactly N keys (event i to key i mod N, four keys to an account), replayed through the
backtest's engine on the same Redis. The content, timing and rules are the stream's own, so
only the number of subjects, and with it the Redis working set, differs between the points.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson

from enforcer.core.settings import Settings
from enforcer.engine.policy import load_policy
from enforcer.tools.backtest import run_backtest

FULL_POINTS = (1_000, 10_000, 100_000)
QUICK_POINTS = (1_000, 10_000)


def rekeyed(docs: list[dict[str, Any]], keys: int) -> list[bytes]:
    lines = []
    for i, doc in enumerate(docs):
        k = i % keys
        lines.append(
            orjson.dumps(dict(doc, api_key=f"k_bench{k:06d}", account_id=f"a_bench{k // 4:06d}"))
        )
    return lines


async def by_active_keys(
    settings: Settings, docs: list[dict[str, Any]], points: tuple[int, ...]
) -> dict[str, float]:
    policy = load_policy(settings.policy_file)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for keys in points:
            path = Path(tmp) / f"events-{keys}.jsonl"
            path.write_bytes(b"\n".join(rekeyed(docs, keys)) + b"\n")
            report = await run_backtest(settings, policy, path)
            out[str(keys)] = report.events_per_s
            path.unlink()
    return out
