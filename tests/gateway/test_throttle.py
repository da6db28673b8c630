"""The shared throttle: GCRA in Redis, one rate per throttled subject across every sidecar."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import redis.asyncio as aioredis

from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.gateway.throttle import SharedThrottle
from enforcer.gateway.verdicts import ThrottleLimit
from tests.gateway.conftest import Publish, SidecarFactory, check_url, make_decision

KEY = Subject("api_key", "k-gcra")


async def test_gcra_admits_its_burst_then_one_request_per_interval(
    isolated: Settings, redis_client: aioredis.Redis
) -> None:
    throttle = SharedThrottle(redis_client, isolated.redis_prefix, burst_s=1.0)
    limit = [ThrottleLimit(KEY, 4.0, None)]  # 4 rps, a burst of 4, then one per 250 ms
    results = [await throttle.check(limit) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 4 + [False] * 2
    assert 0 < results[4].retry_after_s <= 0.25
    await asyncio.sleep(results[5].retry_after_s + 0.02)
    assert (await throttle.check(limit)).allowed
    assert not (await throttle.check(limit)).allowed


async def test_gcra_reports_its_burst_what_remains_and_when_the_burst_is_whole_again(
    isolated: Settings, redis_client: aioredis.Redis
) -> None:
    throttle = SharedThrottle(redis_client, isolated.redis_prefix, burst_s=1.0)
    limit = [ThrottleLimit(KEY, 4.0, None)]  # a burst of 4, earned back within 1 s
    standings = [(await throttle.check(limit)).standing for _ in range(5)]
    assert all(s is not None for s in standings)
    assert [(s.quota, s.window_s, s.remaining, s.reset_s) for s in standings if s] == [
        (4, 1, 3, 1),
        (4, 1, 2, 1),
        (4, 1, 1, 1),
        (4, 1, 0, 1),
        (4, 1, 0, 1),  # refused: nothing left, whole again within the second
    ]
    slow = [ThrottleLimit(Subject("api_key", "k-slow"), 0.2, None)]  # one request per 5 s
    first = (await throttle.check(slow)).standing
    assert first is not None
    assert (first.quota, first.window_s, first.remaining, first.reset_s) == (1, 5, 0, 5)


async def test_zero_rate_refuses_until_the_decision_expires(
    isolated: Settings, redis_client: aioredis.Redis
) -> None:
    throttle = SharedThrottle(redis_client, isolated.redis_prefix)
    result = await throttle.check([ThrottleLimit(KEY, 0.0, time.time() + 42)])
    assert not result.allowed and 41 <= result.retry_after_s <= 42
    assert result.standing is not None
    assert (result.standing.quota, result.standing.window_s) == (0, None)
    assert (result.standing.remaining, result.standing.reset_s) == (0, 42)


async def test_every_throttle_of_a_request_is_counted_in_one_check(
    isolated: Settings, redis_client: aioredis.Redis
) -> None:
    throttle = SharedThrottle(redis_client, isolated.redis_prefix, burst_s=1.0)
    key_limit = ThrottleLimit(KEY, 10.0, None)
    network_limit = ThrottleLimit(Subject("network", "192.0.2.0/24"), 1.0, None)
    first = await throttle.check([key_limit, network_limit])
    second = await throttle.check([key_limit, network_limit])
    assert first.allowed and not second.allowed
    assert 0.5 < second.retry_after_s <= 1.0  # the network's 1 rps is the one that refused
    assert second.standing is not None and second.standing.limit == network_limit


async def test_two_sidecars_keep_one_shared_rate(
    sidecar_factory: SidecarFactory, publish: Publish, http: aiohttp.ClientSession
) -> None:
    await publish(make_decision("api_key", "k-shared", "throttle", limit_rps=1))
    sidecars = [await sidecar_factory(), await sidecar_factory()]
    urls = [check_url(s) for s in sidecars]
    request_headers = {"X-Enforcer-Key": "k-shared", "X-Enforcer-Ip": "192.0.2.1"}

    async def burst(n: int) -> list[tuple[int, int]]:
        outcomes = []
        for i in range(n):
            async with http.get(urls[i % 2], headers=request_headers) as resp:
                outcomes.append((i % 2, resp.status))
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) == 1
        return outcomes

    started = time.monotonic()
    first = await burst(20)
    assert time.monotonic() - started < 0.9, "the burst must fit in one interval to prove sharing"
    # One request per second in all, not one per second per sidecar.
    assert sum(status == 200 for _, status in first) == 1
    assert {sidecar for sidecar, status in first if status == 429} == {0, 1}
    await asyncio.sleep(1.05)
    again = await burst(10)
    assert sum(status == 200 for _, status in again) == 1
