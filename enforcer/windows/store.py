"""The window store: atomic, idempotent window updates and decision state in Redis.

Algorithms (what a signal means) live in enforcer.detectors; this module only knows how to
count into buckets and read sums back. Each batch costs one pipelined round trip for the
windows and one for decision state, however many events it holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from enforcer.decisions import Subject
from enforcer.windows import keys


class StorageError(RuntimeError):
    """Redis failed or was unreachable. Raised once, where the error enters enforcer."""


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    seconds: int
    bucket_s: int

    @classmethod
    def of(cls, name: str, seconds: int) -> Window:
        # About 20 buckets per window: the sum's edge error stays near 5% of the window while
        # each window hash stays small enough for Redis' compact listpack encoding.
        return cls(name, seconds, max(1, seconds // 20))


class EventCounts(NamedTuple):
    event_id: str
    ts: float
    values: tuple[int, ...]  # one per counter, in the store's counter order


class SubjectBatch(NamedTuple):
    subject: Subject
    events: list[EventCounts]


class WindowStats(NamedTuple):
    subject: Subject
    watermark: float | None
    accepted: int
    duplicates: int
    too_late: int
    sums: dict[str, dict[str, int]]  # window name -> counter -> sum


class StateProposal(NamedTuple):
    subject: Subject
    mode: str
    action: str
    rank: int
    expires_at: float | None
    ts: float
    rule: str


def _load_lua(name: str) -> str:
    return resources.files("enforcer.windows").joinpath(name).read_text()


class Script:
    """A Lua script called by SHA inside pipelines, loaded on first NOSCRIPT.

    redis-py's own pipeline scripts check SCRIPT EXISTS before every execute, an extra round
    trip per batch on the hot path; this costs one only after a Redis restart."""

    def __init__(self, name: str) -> None:
        import hashlib

        self.source = _load_lua(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def load(self, client: aioredis.Redis) -> None:
        await client.script_load(self.source)


class WindowStore:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        windows: Sequence[Window],
        counters: Sequence[str],
        lateness_s: float,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.windows = tuple(windows)
        self.counters = tuple(counters)
        self.lateness_s = lateness_s
        # Pipelined round trips made so far: the hot path's cost in Redis, watched by tests
        # and metrics (a batch must cost a fixed number, not one per event).
        self.round_trips = 0
        self._update = Script("update_windows.lua")
        self._decide = Script("decide.lua")

    def _header(self, windows: tuple[Window, ...]) -> list[Any]:
        header: list[Any] = [self.lateness_s, len(windows)]
        for w in windows:
            header += [w.seconds, w.bucket_s]
        return header + [len(self.counters), *self.counters]

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 2.0, **kwargs: Any) -> WindowStore:
        client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return cls(client, **kwargs)

    async def update(
        self, batches: Sequence[SubjectBatch], windows: Sequence[Window] | None = None
    ) -> list[WindowStats]:
        """Count every subject's events and return each subject's window sums afterwards.

        `windows` defaults to the store's own; the worker passes the policy's, so a reloaded
        policy with new windows takes effect at the next batch (a new window starts empty)."""
        if not batches:
            return []
        windows = tuple(windows) if windows is not None else self.windows
        header = self._header(windows)
        calls = []
        for batch in batches:
            window_keys = [keys.window_key(self.prefix, batch.subject, w.seconds) for w in windows]
            args = list(header)
            for ev in batch.events:
                args += [ev.event_id, repr(ev.ts), *ev.values]
            calls.append(([keys.dedupe_key(self.prefix, batch.subject), *window_keys], args))
        replies = await self._run(self._update, calls)
        stats = []
        n_counters = len(self.counters)
        for batch, reply in zip(batches, replies, strict=True):
            accepted, duplicates, too_late, watermark = reply[:4]
            sums: dict[str, dict[str, int]] = {}
            pos = 4
            for w in windows:
                sums[w.name] = dict(zip(self.counters, map(int, reply[pos : pos + n_counters]), strict=True))
                pos += n_counters
            stats.append(
                WindowStats(
                    batch.subject,
                    float(watermark) if watermark else None,
                    int(accepted),
                    int(duplicates),
                    int(too_late),
                    sums,
                )
            )
        return stats

    async def decide(
        self, proposals: Sequence[StateProposal], renew_before_s: float
    ) -> list[bool]:
        """For each proposal, whether it must be published (new, stronger, or due for renewal)."""
        if not proposals:
            return []
        calls = []
        for p in proposals:
            expires = "" if p.expires_at is None else repr(p.expires_at)
            lifetime = 86400 if p.expires_at is None else max(60, int(p.expires_at - p.ts) + 3600)
            calls.append(
                (
                    [keys.state_key(self.prefix, p.subject, p.mode)],
                    [p.action, p.rank, expires, repr(p.ts), renew_before_s, p.rule, lifetime],
                )
            )
        replies = await self._run(self._decide, calls)
        return [int(r) == 1 for r in replies]

    async def _run(self, script: Script, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        try:
            for attempt in (1, 2):
                pipe = self.client.pipeline(transaction=False)
                for key_list, args in calls:
                    pipe.evalsha(script.sha, len(key_list), *key_list, *args)
                replies = await pipe.execute(raise_on_error=False)
                self.round_trips += 1
                if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                    await script.load(self.client)
                    continue
                for r in replies:
                    if isinstance(r, Exception):
                        raise r
                return list(replies)
        except ResponseError as exc:
            raise StorageError(f"redis script failed: {exc}") from exc
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise StorageError(f"redis unavailable: {exc}") from exc
        raise StorageError("redis script could not be loaded")

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def drop_namespace(self) -> int:
        """Delete every key under this store's prefix (backtests and tests clean up with it)."""
        removed = 0
        try:
            async for key in self.client.scan_iter(match=keys.namespace_pattern(self.prefix), count=1000):
                removed += await self.client.unlink(key)
        except (RedisError, OSError) as exc:
            raise StorageError(f"redis unavailable: {exc}") from exc
        return removed

    async def close(self) -> None:
        await self.client.aclose()
