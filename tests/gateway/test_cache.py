"""DecisionCache: expiry, CIDR matching, strongest action, shadow, bounded memory, and rebuilding
from the real compacted topic after a restart."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from enforcer.core.decisions import Decision, Subject
from enforcer.core.settings import Settings
from enforcer.gateway.cache import DecisionCache
from enforcer.gateway.verdicts import ThrottleLimit, parse_ip
from tests.gateway.conftest import Publish, make_decision

T0 = 1_790_000_000.0


def cache_with(*decisions: Decision, max_entries: int = 1000) -> DecisionCache:
    cache = DecisionCache("unused:9092", "unused", max_entries=max_entries, clock=lambda: T0)
    for d in decisions:
        cache.apply_record(d.subject.key.encode(), d.to_json(), now=T0)
    return cache


def test_decision_applies_until_its_expiry_and_not_after() -> None:
    cache = cache_with(make_decision("api_key", "k1", "block", expires_in=60, now=T0))
    assert cache.lookup("k1", "192.0.2.1", now=T0 + 59.9).action == "block"
    assert cache.lookup("k1", "192.0.2.1", now=T0 + 60.0).action == "allow"
    # The lapsed decision also leaves memory once the sweep passes its expiry.
    assert cache.expire(now=T0 + 61) == 1
    assert cache.stats().size == 0 and cache.stats().expired == 1


def test_decision_that_arrives_already_expired_is_not_kept() -> None:
    cache = cache_with(make_decision("api_key", "k1", "block", expires_in=-1, now=T0))
    assert cache.stats().size == 0
    assert cache.lookup("k1", "192.0.2.1", now=T0).action == "allow"


def test_network_decision_matches_every_address_in_its_cidr_and_no_other() -> None:
    cache = cache_with(
        make_decision("network", "203.0.113.0/24", "block", now=T0),
        make_decision("network", "2001:db8:1::/48", "degrade", now=T0),
        make_decision("network", "198.51.100.77/26", "throttle", limit_rps=2, now=T0),
    )
    for inside in ("203.0.113.0", "203.0.113.9", "203.0.113.255", "::ffff:203.0.113.40"):
        assert cache.lookup("k", inside, now=T0).action == "block", inside
    for outside in ("203.0.112.255", "203.0.114.0", "2001:db8:2::1"):
        assert cache.lookup("k", outside, now=T0).action == "allow", outside
    assert cache.lookup("k", "2001:db8:1:ffff::5", now=T0).action == "degrade"
    # A host address written into a CIDR names its network (198.51.100.64/26).
    assert cache.lookup("k", "198.51.100.64", now=T0).action == "throttle"
    assert cache.lookup("k", "198.51.100.63", now=T0).action == "allow"


def test_ip_asn_and_account_decisions_match_exactly() -> None:
    cache = cache_with(
        make_decision("ip", "2001:db8::0:1", "block", now=T0),
        make_decision("asn", "64500", "degrade", now=T0),
        make_decision("account", "acct-9", "throttle", limit_rps=3, now=T0),
    )
    # The same address, spelt differently.
    assert cache.lookup(None, "2001:db8::1", now=T0).action == "block"
    assert cache.lookup(None, "2001:db8::2", now=T0).action == "allow"
    assert cache.lookup("k", "192.0.2.1", asn=64500, now=T0).action == "degrade"
    assert cache.lookup("k", "192.0.2.1", asn="64501", now=T0).action == "allow"
    verdict = cache.lookup("k", "192.0.2.1", account_id="acct-9", now=T0)
    assert (verdict.action, verdict.limit_rps) == ("throttle", 3)


def test_strongest_action_wins_and_every_throttle_is_kept() -> None:
    cache = cache_with(
        make_decision("api_key", "k1", "throttle", limit_rps=5, now=T0),
        make_decision("network", "192.0.2.0/24", "throttle", limit_rps=2, now=T0),
        make_decision("account", "a1", "degrade", now=T0),
        make_decision("asn", "64500", "block", now=T0),
    )
    both = cache.lookup("k1", "192.0.2.7", account_id="a1", now=T0)
    assert both.action == "degrade" and both.limit_rps == 2
    assert {t.subject for t in both.throttles} == {
        Subject("api_key", "k1"),
        Subject("network", "192.0.2.0/24"),
    }
    blocked = cache.lookup("k1", "192.0.2.7", account_id="a1", asn=64500, now=T0)
    assert blocked.action == "block" and blocked.subject == Subject("asn", "64500")


def test_latest_record_of_a_subject_is_its_state_and_allow_or_tombstone_lift_it() -> None:
    throttle = make_decision("api_key", "k1", "throttle", limit_rps=1, now=T0)
    cache = cache_with(
        make_decision("api_key", "k1", "block", now=T0),
        throttle,
        make_decision("api_key", "k2", "block", now=T0),
        make_decision("network", "203.0.113.0/24", "block", now=T0),
    )
    assert cache.lookup("k1", "192.0.2.1", now=T0).throttles == (
        ThrottleLimit(
            Subject("api_key", "k1"), 1.0, T0 + 300, "test-throttle", throttle.decision_id
        ),
    )
    lift = make_decision("api_key", "k2", "allow", now=T0)
    cache.apply_record(b"api_key:k2", lift.to_json(), now=T0)
    cache.apply_record(b"network:203.0.113.0/24", None, now=T0)
    assert cache.lookup("k2", "203.0.113.5", now=T0).action == "allow"
    assert cache.stats().size == 1


def test_an_ip_block_holds_for_every_spelling_of_the_address_and_zone_ids_are_refused() -> None:
    v6_block = make_decision("ip", "2001:db8::5", "block", now=T0)
    cache = cache_with(v6_block, make_decision("ip", "192.0.2.99", "block", now=T0))
    for spelling in ("2001:db8::5", "2001:DB8:0:0::5", "2001:0db8:0000::0005"):
        verdict = cache.lookup(None, spelling, now=T0)
        assert (verdict.action, verdict.decision_id) == ("block", v6_block.decision_id), spelling
    assert cache.lookup(None, "::ffff:192.0.2.99", now=T0).action == "block"
    # A zone id names an interface of some host; taken as written it would make another subject.
    for zoned in ("2001:db8::5%0", "2001:db8::5%eth0", "fe80::1%1"):
        with pytest.raises(ValueError):
            cache.lookup(None, zoned, now=T0)
        with pytest.raises(ValueError):
            parse_ip(zoned)
    zoned_decision = make_decision("ip", "2001:db8::6%0", "block", now=T0)
    cache.apply_record(b"ip:2001:db8::6%0", zoned_decision.to_json(), now=T0)
    assert cache.stats().invalid == 1 and cache.stats().size == 2


def test_shadow_and_campaign_decisions_are_counted_and_not_kept() -> None:
    cache = cache_with(
        make_decision("api_key", "k1", "block", mode="shadow", now=T0),
        make_decision("campaign", "c-1", "block", now=T0),
    )
    assert cache.lookup("k1", "192.0.2.1", now=T0).action == "allow"
    stats = cache.stats()
    assert (stats.size, stats.shadow_ignored, stats.unmatched) == (0, 1, 1)


def test_memory_stays_bounded_by_dropping_the_decision_expiring_soonest() -> None:
    decisions = [
        make_decision("api_key", f"k{i}", "block", expires_in=100 + i, now=T0) for i in range(10)
    ]
    cache = cache_with(*decisions, max_entries=4)
    assert cache.stats().size == 4 and cache.stats().evicted == 6
    kept = [i for i in range(10) if cache.lookup(f"k{i}", "192.0.2.1", now=T0).action == "block"]
    assert kept == [6, 7, 8, 9]


def test_bad_records_are_counted_not_applied() -> None:
    cache = cache_with()
    cache.apply_record(b"api_key:x", b"{not json", now=T0)
    cache.apply_record(b"network:x", make_decision("network", "300.1.2.0/24", "block").to_json())
    assert cache.stats().invalid == 2 and cache.stats().size == 0


async def test_shadow_decisions_on_the_topic_never_change_what_the_gateway_enforces(
    kafka_settings: Settings, publish: Publish
) -> None:
    await publish(
        make_decision("api_key", "k-enforced", "throttle", limit_rps=1),
        make_decision("api_key", "k-enforced", "block", mode="shadow"),
        make_decision("api_key", "k-shadow", "block", mode="shadow"),
    )
    cache = DecisionCache.from_settings(kafka_settings)
    await cache.start()
    try:
        assert await cache.wait_ready(20)
        assert cache.lookup("k-enforced", "192.0.2.1").action == "throttle"
        assert cache.lookup("k-shadow", "192.0.2.1").action == "allow"
        assert cache.stats().shadow_ignored == 2
    finally:
        await cache.stop()


async def test_fresh_cache_rebuilds_the_same_state_from_the_compacted_topic(
    kafka_settings: Settings, publish: Publish
) -> None:
    await publish(
        make_decision("api_key", "k-block", "block"),
        make_decision("api_key", "k-lifted", "block"),
        make_decision("network", "203.0.113.0/24", "degrade"),
        make_decision("api_key", "k-throttle", "block", expires_in=5),
        make_decision("api_key", "k-throttle", "throttle", limit_rps=2),
    )
    await publish(make_decision("api_key", "k-lifted", "allow"))
    requests = [
        ("k-block", "192.0.2.1"),
        ("k-lifted", "192.0.2.1"),
        ("k", "203.0.113.9"),
        ("k-throttle", "192.0.2.1"),
    ]

    first = DecisionCache.from_settings(kafka_settings)
    await first.start()
    assert await first.wait_ready(20)
    before = [first.lookup(key, ip).action for key, ip in requests]
    await first.stop()

    # A gateway restarted (or a broker restarted under it) starts from nothing but the topic.
    second = DecisionCache.from_settings(kafka_settings)
    await second.start()
    try:
        assert await second.wait_ready(20)
        after = [second.lookup(key, ip).action for key, ip in requests]
        assert before == after == ["block", "allow", "degrade", "throttle"]
        stats = second.stats()
        assert (stats.size, stats.lag, stats.ready, stats.connected) == (3, 0, True, True)
    finally:
        await second.stop()


class FlakyConsumer:
    """A real consumer whose start or fetch fails the way a broker restart makes it fail."""

    def __init__(
        self, real: AIOKafkaConsumer, fail_start: bool, fail_fetch_after: int | None
    ) -> None:
        self.real = real
        self.fail_start = fail_start
        self.fail_fetch_after = fail_fetch_after
        self.fetches = 0

    async def start(self) -> None:
        if self.fail_start:
            raise KafkaConnectionError("simulated: broker away at start-up")
        await self.real.start()

    async def getmany(self, *args: object, **kwargs: object) -> dict:
        self.fetches += 1
        if self.fail_fetch_after is not None and self.fetches > self.fail_fetch_after:
            raise KafkaConnectionError("simulated: connection lost")
        return await self.real.getmany(*args, **kwargs)

    async def stop(self) -> None:
        await self.real.stop()

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


async def test_kafka_failures_restart_the_consumer_which_resumes_where_it_was(
    kafka_settings: Settings, publish: Publish
) -> None:
    await publish(make_decision("api_key", "k-before", "block"))
    made: list[FlakyConsumer] = []
    cache = DecisionCache.from_settings(kafka_settings)

    def factory() -> AIOKafkaConsumer:
        plans = [(True, None), (False, 3), (False, None)]  # away at start, then lost, then fine
        fail_start, fail_after = plans[min(len(made), len(plans) - 1)]
        consumer = FlakyConsumer(cache._default_consumer(), fail_start, fail_after)
        made.append(consumer)
        return consumer  # type: ignore[return-value]

    cache._consumer_factory = factory
    await cache.start()
    try:
        assert await cache.wait_ready(20)
        assert cache.lookup("k-before", "192.0.2.1").action == "block"
        deadline = time.monotonic() + 20
        while len(made) < 3:  # the second consumer loses its connection after three fetches
            assert time.monotonic() < deadline, "the simulated outage never happened"
            await asyncio.sleep(0.05)
        await publish(make_decision("api_key", "k-after", "degrade"))
        while cache.lookup("k-after", "192.0.2.1").action != "degrade":
            assert time.monotonic() < deadline, f"not applied after the outage: {cache.stats()}"
            await asyncio.sleep(0.05)
        stats = cache.stats()
        assert len(made) == 3 and stats.reconnects == 2 and stats.connected
        # Resumed, not re-read: each record was applied exactly once.
        assert stats.applied == 2 and stats.size == 2
    finally:
        await cache.stop()


async def test_cache_reports_size_and_lag_and_keeps_up_with_new_decisions(
    kafka_settings: Settings, publish: Publish
) -> None:
    await publish(*(make_decision("api_key", f"k{i}", "block") for i in range(50)))
    cache = DecisionCache.from_settings(kafka_settings)
    assert cache.stats().lag == 0 and not cache.stats().ready
    await cache.start()
    try:
        assert await cache.wait_ready(20)
        assert cache.stats().size == 50 and cache.stats().lag == 0
        await publish(make_decision("network", "2001:db8:1::/48", "block"))
        deadline = time.monotonic() + 5
        while cache.lookup("k", "2001:db8:1::9").action != "block":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert cache.stats().size == 51
    finally:
        await cache.stop()
