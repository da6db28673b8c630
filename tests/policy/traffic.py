"""Deterministic gateway traffic for what-if tests: who sends how fast, written as JSON lines."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import orjson

T0 = 1_790_000_000.0


class Sender(NamedTuple):
    api_key: str
    rps: float
    ip: str
    start_s: float = 0.0
    seconds: float = 180.0
    tier: str | None = None


def events_of(senders: list[Sender]) -> list[dict]:
    docs = []
    for s in senders:
        n = int(s.rps * s.seconds)
        for i in range(n):
            doc = {
                "event_id": f"{s.api_key}-{i}",
                "ts": round(T0 + s.start_s + i / s.rps, 3),
                "api_key": s.api_key,
                "ip": s.ip,
                "output_tokens": 200,
            }
            if s.tier:
                doc["tier"] = s.tier
            docs.append(doc)
    return sorted(docs, key=lambda d: d["ts"])


def write_events(path: Path, senders: list[Sender]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in events_of(senders)))
    return path


# Three flooding keys, three keys in between the old and the new threshold, ten quiet ones;
# each from its own network so only key rules matter.
MIXED = [
    *(Sender(f"k-flood-{i}", 8.0, f"203.0.113.{10 + i}", start_s=20 * i) for i in range(3)),
    *(Sender(f"k-medium-{i}", 4.5, f"198.51.{100 + i}.7", start_s=30 + 20 * i) for i in range(3)),
    *(Sender(f"k-quiet-{i}", 0.2, f"192.0.2.{i + 1}", seconds=300) for i in range(10)),
]
