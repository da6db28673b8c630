"""The window store, the lift and the throttle on a three-master Redis Cluster: every script
call keeps its keys in one slot, the counts equal the single Redis', a batch costs one round
trip per node, and a slot that moves mid-run is followed without losing or doubling a count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from enforcer.core.counts import (
    CampaignBatch,
    CampaignUse,
    EventCounts,
    LadderStep,
    Receipt,
    StateProposal,
    SubjectBatch,
    Window,
)
from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.gateway.throttle import SharedThrottle
from enforcer.gateway.verdicts import ThrottleLimit
from enforcer.store import keys
from enforcer.store.client import AnyRedis, redis_client
from enforcer.store.lift import evidence_keys, lift_subject
from enforcer.store.routing import Call, CrossSlotCall, call_slot
from enforcer.store.windows import WindowStore
from tests.cluster.conftest import LocalCluster

T0 = 1_790_000_000.0
WINDOWS = (Window.of("10s", 10), Window.of("1m", 60), Window.of("10m", 600))
COUNTERS = ("req", "out")
# Enough subjects that every slot group, and so every node, holds some.
SUBJECTS = [Subject("api_key", f"k-{i}") for i in range(400)] + [
    Subject("network", f"198.51.{i}.0/24") for i in range(40)
]


def _store(client: AnyRedis, prefix: str) -> WindowStore:
    return WindowStore(
        client,
        prefix=prefix,
        windows=WINDOWS,
        counters=COUNTERS,
        lateness_s=30,
        content_window_s=600,
        n_bands=2,
    )


@pytest.fixture
async def stores(
    cluster_settings: Settings, isolated: Settings
) -> AsyncIterator[tuple[WindowStore, WindowStore]]:
    """The same store on the single Redis and on the cluster, each under its own prefix."""
    single = _store(redis_client(isolated.redis_url), isolated.redis_prefix)
    cluster = _store(
        redis_client(cluster_settings.redis_url, cluster=True), cluster_settings.redis_prefix
    )
    yield single, cluster
    await cluster.drop_namespace()
    await single.close()
    await cluster.close()


def _batches(step: int) -> tuple[list[SubjectBatch], list[CampaignBatch]]:
    """A batch like the worker's: keys tracking templates, networks not, campaigns."""
    batches = []
    for n, subject in enumerate(SUBJECTS):
        events = [
            EventCounts(
                f"{subject.key}-{step}-{i}",
                T0 + step * 5 + i * 0.5 + n % 3,
                (1, 10 + i),
                fingerprint=f"fp{n % 7}",
                bands=(f"b{n % 5}", f"c{n % 3}"),
            )
            for i in range(3)
        ]
        batches.append(SubjectBatch(subject, events, templates=subject.kind == "api_key"))
    campaigns = [
        CampaignBatch(
            f"fp{t}",
            T0 + step * 5,
            [CampaignUse(f"k-{u}", f"198.51.{u % 9}.0/24", f"acct-{u % 4}") for u in range(t * 5)],
        )
        for t in range(1, 8)
    ]
    return batches, campaigns


def _proposals(step: int) -> list[StateProposal]:
    ladder = (LadderStep(2, "block", 3, T0 + 7200),)
    return [
        StateProposal(s, mode, "throttle", 2, T0 + 3600, T0 + step * 5, "burst", ladder)
        for s in SUBJECTS[::11]
        for mode in ("enforce", "shadow")
    ]


def _rows(store_stats: Any) -> list[tuple[Any, ...]]:
    windows, campaigns = store_stats
    return [
        (s.subject, s.accepted, s.duplicates, s.too_late, s.watermark, tuple(s.row), s.templates)
        for s in windows
    ] + [tuple(c) for c in campaigns]


def _recording(store: WindowStore) -> list[Call]:
    """Every script call the store sends from now on."""
    sent: list[Call] = []
    original = store._send

    async def send(calls: list[Call], indexes: Any = None, asked: Any = None) -> Any:
        sent.extend(calls if indexes is None else [calls[i] for i in indexes])
        return await original(calls, indexes, asked)

    store._send = send  # type: ignore[method-assign]
    return sent


async def _server_slots(client: RedisCluster, key_list: list[str]) -> set[int]:
    return {int(await client.execute_command("CLUSTER KEYSLOT", k)) for k in key_list}


async def test_every_script_call_keeps_all_its_keys_in_one_cluster_slot(
    stores: tuple[WindowStore, WindowStore],
    cluster_client: RedisCluster,
    cluster_settings: Settings,
) -> None:
    _, store = stores
    sent = _recording(store)
    batches, campaigns = _batches(0)
    await store.update(batches, campaigns=campaigns)
    outcomes = await store.decide_outcomes(_proposals(0), 600, delivered_by="a-test-producer")
    await store.confirm(
        [
            Receipt(p.subject, p.mode, o.sequence)
            for p, o in zip(_proposals(0), outcomes, strict=True)
        ]
    )
    by_script: dict[str, list[list[str]]] = {}
    for script, key_list, _ in sent:
        by_script.setdefault(script.name, []).append(key_list)
    # The lift's and the throttle's calls, built by the functions they call with.
    subject = SUBJECTS[3]
    prefix = cluster_settings.redis_prefix
    by_script["lift"] = [
        [
            keys.state_key(prefix, subject, "enforce"),
            keys.state_key(prefix, subject, "shadow"),
            *evidence_keys(prefix, subject, ["burst", "flood"], 600, T0),
        ]
    ]
    by_script["gcra"] = [[keys.throttle_key(prefix, s)] for s in SUBJECTS]
    assert set(by_script) == {"update_windows", "campaign", "decide", "confirm", "lift", "gcra"}
    for name, calls in by_script.items():
        for key_list in calls:
            slots = await _server_slots(cluster_client, key_list)
            assert len(slots) == 1, f"{name} call spans slots {slots}: {key_list}"
    # The client-side check the store routes by agrees with the server.
    call = sent[0]
    assert {call_slot(call)} == await _server_slots(cluster_client, call[1])
    with pytest.raises(CrossSlotCall):
        call_slot((call[0], ["{a}x", "{b}x"], []))


async def test_cluster_counts_and_decides_as_the_single_redis_does(
    stores: tuple[WindowStore, WindowStore],
) -> None:
    single, cluster = stores
    published = 0
    for step in range(3):
        batches, campaigns = _batches(step)
        # The second step repeats the first one's events: both must refuse them as duplicates.
        if step == 2:
            batches, campaigns = _batches(1)
        on_single = await single.update(batches, campaigns=campaigns)
        on_cluster = await cluster.update(batches, campaigns=campaigns)
        assert _rows(on_cluster) == _rows(on_single)
        decided_single = await single.decide_outcomes(_proposals(step), 600)
        decided_cluster = await cluster.decide_outcomes(_proposals(step), 600)
        assert decided_cluster == decided_single
        published += sum(o.publish for o in decided_cluster)
    assert published
    assert sum(s.duplicates for s in on_cluster[0]) == 3 * len(SUBJECTS)


async def test_a_batch_costs_one_pipelined_round_trip_per_node(
    stores: tuple[WindowStore, WindowStore], redis_cluster: LocalCluster
) -> None:
    _, cluster = stores
    batches, campaigns = _batches(0)
    await cluster.update(batches, campaigns=campaigns)  # loads the scripts, maps the slots
    before = (cluster.round_trips, cluster.node_round_trips)
    batches, campaigns = _batches(1)
    await cluster.update(batches, campaigns=campaigns)
    await cluster.decide_outcomes(_proposals(1), 600)
    assert (cluster.round_trips, cluster.node_round_trips) == (
        before[0] + 2,
        before[1] + 2 * len(redis_cluster.ports),
    )


async def test_a_slot_moved_mid_run_is_followed_without_losing_or_doubling_a_count(
    stores: tuple[WindowStore, WindowStore],
    redis_cluster: LocalCluster,
    cluster_client: RedisCluster,
) -> None:
    single, cluster = stores
    subject = SUBJECTS[5]
    slot = keys.window_key(cluster.prefix, subject)
    slot = int(await cluster_client.execute_command("CLUSTER KEYSLOT", slot))
    other = keys.window_key(cluster.prefix, SUBJECTS[6])
    other_slot = int(await cluster_client.execute_command("CLUSTER KEYSLOT", other))
    assert other_slot != slot
    for step in range(4):
        batches, campaigns = _batches(step)
        before = cluster.node_round_trips
        on_single = await single.update(batches, campaigns=campaigns)
        if step == 1:
            # A batch sent while its slot migrates: its keys are on the new owner, the slot not
            # yet handed over (ASK, then TRYAGAIN for keys a call creates), and the hand-over
            # completes while the store retries (MOVED).
            await _migrate_slot(redis_cluster, cluster_client, slot)
            sent = asyncio.ensure_future(cluster.update(batches, campaigns=campaigns))
            await asyncio.sleep(0.15)
            await _finish_slot(redis_cluster, cluster_client, slot)
            on_cluster = await sent
        else:
            if step == 2:  # a slot moved between batches: MOVED, the slot map is updated
                await _migrate_slot(redis_cluster, cluster_client, other_slot)
                await _finish_slot(redis_cluster, cluster_client, other_slot)
            on_cluster = await cluster.update(batches, campaigns=campaigns)
        assert _rows(on_cluster) == _rows(on_single), f"step {step}"
        if step in (1, 2):
            # The redirected calls went again, to the slot's new owner.
            assert cluster.node_round_trips - before > len(redis_cluster.ports), f"step {step}"
        assert await cluster.decide_outcomes(_proposals(step), 600) == (
            await single.decide_outcomes(_proposals(step), 600)
        )
    for moved in (subject, SUBJECTS[6]):
        [stats], _ = await cluster.update([SubjectBatch(moved, [])])
        assert stats.sums["10m"]["req"] == 12  # three events a step, each counted once


async def _node_ids(client: RedisCluster) -> dict[int, str]:
    ids = {}
    for address, info in (await client.cluster_nodes()).items():
        ids[int(address.rsplit(":", 1)[1])] = info["node_id"]
    return ids


_MIGRATING: dict[int, tuple[int, int]] = {}


async def _migrate_slot(cluster: LocalCluster, client: RedisCluster, slot: int) -> None:
    """Move a slot's keys to another node as `redis-cli --cluster reshard` does, leaving the
    slot migrating until _finish_slot hands it over."""
    ids = await _node_ids(client)
    owner = client.nodes_manager.get_node_from_slot(slot).port
    target = next(p for p in cluster.ports if p != owner)
    cluster.cli("cluster", "setslot", str(slot), "importing", ids[owner], port=target)
    cluster.cli("cluster", "setslot", str(slot), "migrating", ids[target], port=owner)
    moved = cluster.cli("cluster", "getkeysinslot", str(slot), "1000", port=owner).split()
    assert moved, "the slot holds the subject's keys"
    cluster.cli("migrate", "127.0.0.1", str(target), "", "0", "5000", "keys", *moved, port=owner)
    _MIGRATING[slot] = (owner, target)


async def _finish_slot(cluster: LocalCluster, client: RedisCluster, slot: int) -> None:
    ids = await _node_ids(client)
    _, target = _MIGRATING.pop(slot)
    for port in cluster.ports:
        cluster.cli("cluster", "setslot", str(slot), "node", ids[target], port=port)


async def test_lift_clears_a_subjects_evidence_on_the_cluster(
    stores: tuple[WindowStore, WindowStore], cluster_settings: Settings
) -> None:
    _, cluster = stores
    subject = SUBJECTS[0]
    batches, campaigns = _batches(0)
    await cluster.update(batches, campaigns=campaigns)
    removed = await lift_subject(
        cluster.client,
        cluster.prefix,
        subject,
        ["burst"],
        content_window_s=600,
        lifted_at=T0 + 10,
        grace_until=None,
    )
    assert removed >= 2  # its windows and this epoch's template counts
    [stats], _ = await cluster.update([SubjectBatch(subject, [], templates=True)])
    assert stats.sums["10m"]["req"] == 0


async def _throttle_run(client: AnyRedis, prefix: str) -> list[tuple[bool, int | None]]:
    throttle = SharedThrottle(client, prefix, burst_s=1.0)
    limits = [ThrottleLimit(s, 5.0, None) for s in SUBJECTS[:12]]
    outcomes = []
    try:
        for _ in range(8):
            result = await throttle.check(limits)
            outcomes.append(
                (result.allowed, None if result.standing is None else result.standing.remaining)
            )
    finally:
        await throttle.close()
    return outcomes


async def test_the_sidecars_shared_throttle_limits_alike_on_the_cluster(
    cluster_settings: Settings, isolated: Settings, cluster_client: RedisCluster
) -> None:
    on_single = await _throttle_run(
        aioredis.Redis.from_url(isolated.redis_url), isolated.redis_prefix
    )
    on_cluster = await _throttle_run(
        redis_client(cluster_settings.redis_url, cluster=True), cluster_settings.redis_prefix
    )
    assert on_cluster == on_single
    assert [allowed for allowed, _ in on_cluster] == [True] * 5 + [False] * 3
    # Each subject's rate lives on the node owning its slot: all three hold some.
    holders = {
        cluster_client.get_node_from_key(keys.throttle_key(cluster_settings.redis_prefix, s)).name
        for s in SUBJECTS[:12]
    }
    assert len(holders) == 3
