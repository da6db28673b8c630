"""The shared throttle: a throttled subject's rate, kept by every check sidecar together.

Each sidecar alone would let a subject through at its limit, so N gateway nodes would allow N
times the limit. The rate's state lives in Redis instead, advanced atomically by gcra.lua
(the Lua file beside this loader), one key per subject with its hash tag; a check costs one
round trip however many throttles apply.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from enforcer.gateway.cache import ThrottleLimit
from enforcer.windows import keys
from enforcer.windows.store import Script, StorageError

# How long a zero-rate throttle without an expiry tells the client to wait, seconds.
_ZERO_RATE_RETRY_S = 60.0


class ThrottleResult(NamedTuple):
    allowed: bool
    retry_after_s: float  # 0 when allowed


ALLOWED = ThrottleResult(True, 0.0)


class SharedThrottle:
    """GCRA rates in Redis, one per throttled subject, shared by every sidecar on the prefix.

    `burst_s` is how many seconds of its rate a subject may spend at once (at least one
    request). Redis errors raise StorageError; after one, calls fail fast for `retry_s`
    instead of each waiting out the timeout, so a Redis outage does not slow every request."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        burst_s: float = 1.0,
        default_limit_rps: float = 1.0,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.burst_s = burst_s
        self.default_limit_rps = default_limit_rps
        self.retry_s = retry_s
        self.clock = clock
        self.script = Script("gcra.lua", "enforcer.gateway")
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, timeout_s: float, **kwargs: Any) -> SharedThrottle:
        client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return cls(client, **kwargs)

    def _args(self, limit_rps: float) -> tuple[int, int]:
        interval_us = 1_000_000 / limit_rps
        burst = max(1.0, limit_rps * self.burst_s)
        return math.ceil(interval_us), math.floor((burst - 1) * interval_us)

    async def check(
        self, limits: Sequence[ThrottleLimit], now: float | None = None
    ) -> ThrottleResult:
        """Count one request against every throttle that applies; refused if any is over.

        A request refused by one subject still spends its share of the others: a sidecar
        cannot take back a spent share atomically across subjects on different slots, and the
        client is told to wait for the slowest anyway."""
        if not limits:
            return ALLOWED
        calls: list[tuple[str, int, int]] = []
        refused_for = 0.0
        for limit in limits:
            rate = self.default_limit_rps if limit.limit_rps is None else limit.limit_rps
            if rate <= 0:
                now = time.time() if now is None else now
                wait = _ZERO_RATE_RETRY_S if limit.expires_at is None else limit.expires_at - now
                refused_for = max(refused_for, wait, 1.0)
                continue
            calls.append((keys.throttle_key(self.prefix, limit.subject), *self._args(rate)))
        if calls:
            for allowed, retry_us in await self._run(calls):
                if not int(allowed):
                    refused_for = max(refused_for, int(retry_us) / 1_000_000)
        return ThrottleResult(False, refused_for) if refused_for > 0 else ALLOWED

    async def _run(self, calls: list[tuple[str, int, int]]) -> list[Any]:
        if self.clock() < self._down_until:
            raise StorageError("redis unavailable (recent failure; retrying shortly)")
        try:
            for attempt in (1, 2):
                try:
                    if len(calls) == 1:
                        key, interval, tolerance = calls[0]
                        return [
                            await self.client.evalsha(self.script.sha, 1, key, interval, tolerance)
                        ]
                    pipe = self.client.pipeline(transaction=False)
                    for key, interval, tolerance in calls:
                        pipe.evalsha(self.script.sha, 1, key, interval, tolerance)
                    replies = await pipe.execute(raise_on_error=False)
                    for reply in replies:
                        if isinstance(reply, Exception):
                            raise reply
                    return list(replies)
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self.script.load(self.client)
        except ResponseError as exc:
            raise StorageError(f"throttle script failed: {exc}") from exc
        except (TimeoutError, RedisError, OSError) as exc:
            self._down_until = self.clock() + self.retry_s
            raise StorageError(f"redis unavailable: {exc}") from exc
        raise StorageError("throttle script could not be loaded")

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (TimeoutError, RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.client.aclose()
