"""Redis memory per active api_key: MEMORY USAGE of every key in a worker's namespace, summed
per api_key subject, and the namespace's whole size per api_key for sizing (accounts, networks,
the dedupe sets and campaign sets included)."""

from __future__ import annotations

from typing import NamedTuple

from enforcer.core.connections import redis_client
from enforcer.core.settings import Settings


class Footprint(NamedTuple):
    api_keys: int  # distinct api_key subjects with any Redis key
    bytes_per_key: float  # mean over them of the sum of their own keys' MEMORY USAGE
    namespace_bytes_per_key: float  # everything under the prefix, per api_key
    redis_keys: int


def subject_of(prefix: str, key: str) -> tuple[str, str] | None:
    """(kind, value) of a subject's key `<prefix>:{<group>}:<kind>:<value>:<part>` (see
    enforcer.store.keys); None for the per-group dedupe sets. Only api_key values are read,
    and they hold no colon."""
    rest = key[len(prefix) + 1 :]
    _, _, rest = rest.partition("}:")
    kind, _, rest = rest.partition(":")
    value, _, part = rest.partition(":")
    if not part or kind == "seen":
        return None
    return kind, value


async def footprint(settings: Settings, prefix: str) -> Footprint:
    client = redis_client(settings, decode_responses=True)
    per_key: dict[str, int] = {}
    total = 0
    count = 0
    try:
        names: list[str] = [k async for k in client.scan_iter(match=f"{prefix}:*", count=2000)]
        for start in range(0, len(names), 1000):
            chunk = names[start : start + 1000]
            async with client.pipeline(transaction=False) as pipe:
                for name in chunk:
                    pipe.memory_usage(name, samples=0)
                sizes = await pipe.execute()
            for name, size in zip(chunk, sizes, strict=True):
                if size is None:  # expired between SCAN and MEMORY USAGE
                    continue
                count += 1
                total += int(size)
                subject = subject_of(prefix, name)
                if subject is not None and subject[0] == "api_key":
                    per_key[subject[1]] = per_key.get(subject[1], 0) + int(size)
    finally:
        await client.aclose()
    n = len(per_key)
    return Footprint(
        n,
        sum(per_key.values()) / n if n else 0.0,
        total / n if n else 0.0,
        count,
    )
