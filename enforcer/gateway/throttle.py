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

from redis.exceptions import NoScriptError, RedisError, ResponseError

from enforcer.core.ports import StorageError
from enforcer.gateway.verdicts import ThrottleLimit
from enforcer.store import keys
from enforcer.store.client import AnyRedis, Script, redis_client

# How long a zero-rate throttle without an expiry tells the client to wait, seconds.
_ZERO_RATE_RETRY_S = 60.0


class RateStanding(NamedTuple):
    """Where a request leaves one throttled subject, in the terms of the RateLimit-Policy and
    RateLimit header fields (draft-ietf-httpapi-ratelimit-headers): a GCRA rate reads as a
    quota of one burst, earned back over a window."""

    limit: ThrottleLimit
    quota: int  # requests one full burst admits (q)
    window_s: int | None  # seconds in which the rate earns a full burst back (w); None at rate 0
    remaining: int  # requests admitted right now before one is refused (r)
    reset_s: int  # seconds until the burst is full again (t)


class ThrottleResult(NamedTuple):
    allowed: bool
    retry_after_s: float  # 0 when allowed
    # The throttle that binds: the one that refused for longest, or else the one with the
    # fewest requests remaining. None when no throttle applied.
    standing: RateStanding | None = None


ALLOWED = ThrottleResult(True, 0.0)


class _Shape(NamedTuple):
    interval_us: int
    tolerance_us: int
    quota: int
    window_s: int


class SharedThrottle:
    """GCRA rates in Redis, one per throttled subject, shared by every sidecar on the prefix.

    `burst_s` is how many seconds of its rate a subject may spend at once (at least one
    request). Redis errors raise StorageError; after one, calls fail fast for `retry_s`
    instead of each waiting out the timeout, so a Redis outage does not slow every request."""

    def __init__(
        self,
        client: AnyRedis,
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
    def from_url(
        cls,
        url: str,
        timeout_s: float,
        redis_options: dict[str, Any] | None = None,
        cluster: bool = False,
        **kwargs: Any,
    ) -> SharedThrottle:
        """`redis_options`: credentials and TLS files (enforcer.core.connections);
        `cluster`: the URL names a node of a Redis Cluster, and each subject's rate lives on
        the node owning its slot (redis-py's cluster pipeline sends to each node once)."""
        return cls(redis_client(url, timeout_s, redis_options, cluster), **kwargs)

    def _shape(self, limit_rps: float) -> _Shape:
        interval_us = 1_000_000 / limit_rps
        burst = max(1.0, limit_rps * self.burst_s)
        quota = math.floor(burst)
        return _Shape(
            math.ceil(interval_us),
            math.floor((burst - 1) * interval_us),
            quota,
            max(1, math.ceil(quota / limit_rps)),
        )

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
        shaped: list[tuple[ThrottleLimit, _Shape]] = []
        # (refused for how long, standing) per throttle
        outcomes: list[tuple[float, RateStanding]] = []
        for limit in limits:
            rate = self.default_limit_rps if limit.limit_rps is None else limit.limit_rps
            if rate <= 0:
                now = time.time() if now is None else now
                wait = _ZERO_RATE_RETRY_S if limit.expires_at is None else limit.expires_at - now
                wait = max(wait, 1.0)
                outcomes.append((wait, RateStanding(limit, 0, None, 0, math.ceil(wait))))
                continue
            shape = self._shape(rate)
            calls.append(
                (
                    keys.throttle_key(self.prefix, limit.subject),
                    shape.interval_us,
                    shape.tolerance_us,
                )
            )
            shaped.append((limit, shape))
        if calls:
            for (limit, shape), reply in zip(shaped, await self._run(calls), strict=True):
                allowed, retry_us, ahead_us = (int(part) for part in reply)
                remaining = 0
                if ahead_us <= shape.tolerance_us:
                    remaining = (shape.tolerance_us - ahead_us) // shape.interval_us + 1
                standing = RateStanding(
                    limit, shape.quota, shape.window_s, remaining, math.ceil(ahead_us / 1_000_000)
                )
                outcomes.append((0.0 if allowed else retry_us / 1_000_000, standing))
        refused_for, standing = max(outcomes, key=lambda o: (o[0], -o[1].remaining, o[1].reset_s))
        return ThrottleResult(refused_for <= 0, refused_for, standing)

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
