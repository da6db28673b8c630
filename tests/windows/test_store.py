"""The window store on real Redis: exactly-once counting, event-time windows, bounded state."""

from __future__ import annotations

import math
import struct

import pytest
import redis.asyncio as aioredis

from enforcer.core.counts import (
    DecideOutcome,
    EventCounts,
    LadderStep,
    Receipt,
    StateProposal,
    SubjectBatch,
    Window,
)
from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.store import keys
from enforcer.store.codec import SUBJECTS_PER_CALL
from enforcer.store.windows import WindowStore

T0 = 1_790_000_000.0
KEY = Subject("api_key", "k-store")
WINDOWS = (Window.of("10s", 10), Window.of("1m", 60), Window.of("10m", 600))


@pytest.fixture
async def store(isolated: Settings) -> WindowStore:
    s = WindowStore.from_url(
        isolated.redis_url,
        prefix=isolated.redis_prefix,
        windows=WINDOWS,
        counters=("req", "out"),
        lateness_s=30,
    )
    yield s
    await s.close()


def counts(n: int, start: float, step: float, prefix: str = "e", out: int = 5) -> list[EventCounts]:
    return [EventCounts(f"{prefix}{i}", start + i * step, (1, out)) for i in range(n)]


async def test_redelivered_events_count_once(store: WindowStore) -> None:
    batch = counts(50, T0, 0.1)
    first = (await store.update([SubjectBatch(KEY, batch)]))[0][0]
    again = (await store.update([SubjectBatch(KEY, batch[:20] + counts(5, T0 + 5, 0.1, "new"))]))[
        0
    ][0]
    assert (first.accepted, first.duplicates) == (50, 0)
    assert (again.accepted, again.duplicates) == (5, 20)
    assert again.sums["1m"] == {
        "req": 55,
        "out": 275,
        "gaps": 54,
        "gap_sum": 540,
        "gap_squares": 5400,
    }


async def test_an_event_twice_in_one_batch_counts_once(store: WindowStore) -> None:
    batch = counts(3, T0, 1.0)
    [stats], _ = await store.update([SubjectBatch(KEY, batch + batch[:2])])
    assert (stats.accepted, stats.duplicates) == (3, 2)
    assert stats.sums["1m"]["req"] == 3


async def test_one_event_counts_once_for_each_of_its_subjects(store: WindowStore) -> None:
    # Subjects share dedupe sets (one per slot group and lateness epoch): an event counted for
    # one subject must still count for the others.
    subjects = [Subject("api_key", f"k-shared-{i}") for i in range(300)]
    batch = counts(2, T0, 1.0)
    stats, _ = await store.update([SubjectBatch(s, batch) for s in subjects])
    assert all((s.accepted, s.duplicates) == (2, 0) for s in stats)
    again, _ = await store.update([SubjectBatch(s, batch) for s in subjects])
    assert all((s.accepted, s.duplicates) == (0, 2) for s in again)


async def test_windows_follow_event_time_not_arrival_time(store: WindowStore) -> None:
    # Twenty minutes of event time, one event every 10 s, all arriving at once.
    stats = (await store.update([SubjectBatch(KEY, counts(120, T0 + 5, 10.0))]))[0][0]
    assert stats.watermark == T0 + 1195
    # Events in (watermark - window, watermark]: 1, 6 and 60. The oldest bucket is weighted by
    # the share of it inside the window, so a sum may be off by a share of one bucket's events.
    assert stats.sums["10s"]["req"] == pytest.approx(1, abs=1)
    assert stats.sums["1m"]["req"] == pytest.approx(6, abs=1)
    assert stats.sums["10m"]["req"] == pytest.approx(60, abs=1)


async def test_window_sums_weight_the_oldest_bucket_by_its_share_inside_the_window(
    store: WindowStore,
) -> None:
    # 1m window, 15 s buckets. Ten events in the bucket starting at B, then one 60 s later:
    # two thirds of that first bucket is still inside the window.
    start = (T0 // 15) * 15
    batch = [EventCounts(f"b{i}", start + i, (1, 0)) for i in range(10)]
    batch.append(EventCounts("last", start + 65, (1, 0)))
    stats = (await store.update([SubjectBatch(KEY, batch)]))[0][0]
    assert stats.sums["1m"]["req"] == pytest.approx(1 + 10 * (15 - 5) / 15)
    # Once the window has slid past the bucket, nothing of it is left.
    later = (await store.update([SubjectBatch(KEY, [EventCounts("x", start + 80, (1, 0))])]))[0][0]
    assert later.sums["1m"]["req"] == pytest.approx(2)


async def test_late_events_count_while_a_window_holds_them_and_older_ones_are_refused(
    store: WindowStore,
) -> None:
    # An account's events arrive from several partitions read at different speeds: an event
    # far behind the subject's newest (beyond the 30 s lateness) still counts where a window
    # holds it; only one older than the longest window (10m) is refused.
    await store.update([SubjectBatch(KEY, counts(1, T0 + 100, 1, "now"))])
    stats = (
        await store.update(
            [
                SubjectBatch(
                    KEY,
                    [
                        EventCounts("late-ok", T0 + 80, (1, 0)),
                        EventCounts("far-behind", T0 + 50, (1, 0)),
                        EventCounts("too-late", T0 + 100 - 601, (1, 0)),
                    ],
                )
            ]
        )
    )[0][0]
    assert (stats.accepted, stats.too_late) == (2, 1)
    assert stats.sums["1m"]["req"] == 3
    assert stats.sums["10s"]["req"] == 1


async def test_subjects_in_one_batch_cost_one_round_trip(store: WindowStore) -> None:
    batches = [
        SubjectBatch(Subject("api_key", f"k{i}"), counts(3, T0, 1, f"k{i}-")) for i in range(200)
    ]
    before = store.round_trips
    stats, _ = await store.update(batches)
    assert store.round_trips - before == 1
    assert all(s.sums["1m"]["req"] == 3 for s in stats)


async def test_a_batch_costs_one_script_call_per_subjects_per_call_against_one_redis(
    store: WindowStore, isolated: Settings
) -> None:
    # One call per slot group made a live batch of sixty events some eighty calls, each paying
    # the script's fixed cost; a Redis Cluster still needs them (it refuses cross-slot calls).
    subjects = [Subject("api_key", f"k-packed-{i}") for i in range(600)]
    assert len({keys.slot_group(s) for s in subjects}) == keys.SLOT_GROUPS
    batch = counts(2, T0, 1.0)
    client = aioredis.Redis.from_url(isolated.redis_url)

    async def calls() -> tuple[int, int]:
        found = await client.info("commandstats")
        return found["cmdstat_evalsha"]["calls"], found.get("cmdstat_smismember", {}).get(
            "calls", 0
        )

    try:
        before = await calls()
        stats, _ = await store.update([SubjectBatch(s, batch) for s in subjects])
        after = await calls()
    finally:
        await client.aclose()
    n_calls = math.ceil(600 / SUBJECTS_PER_CALL)
    assert after[0] - before[0] == n_calls
    assert all(s.accepted == 2 and s.sums["1m"]["req"] == 2 for s in stats)
    # The calls hold their subjects in slot-group order, so each dedupe set (one per slot
    # group here: one lateness epoch) is asked about by one call, or two where a call ends;
    # in batch order each call asked most of the 128.
    assert after[1] - before[1] <= keys.SLOT_GROUPS + n_calls - 1


async def test_events_counted_in_slot_group_calls_are_recognised_in_packed_calls(
    store: WindowStore,
) -> None:
    # A worker upgraded from one call per slot group (or a cluster's store) finds the same
    # dedupe sets: a redelivered batch counts once.
    subjects = [Subject("api_key", f"k-regrouped-{i}") for i in range(300)]
    batch = counts(3, T0, 1.0)
    store._codec.subjects_per_call = None
    first, _ = await store.update([SubjectBatch(s, batch) for s in subjects])
    store._codec.subjects_per_call = SUBJECTS_PER_CALL
    again, _ = await store.update([SubjectBatch(s, batch) for s in subjects])
    assert all((s.accepted, s.duplicates) == (3, 0) for s in first)
    assert all((s.accepted, s.duplicates) == (0, 3) for s in again)
    assert all(s.sums["1m"]["req"] == 3 for s in again)


async def test_every_key_expires_and_old_buckets_are_dropped(
    store: WindowStore, redis_client: aioredis.Redis, isolated: Settings
) -> None:
    await store.update([SubjectBatch(KEY, counts(30, T0, 60.0))])  # 30 minutes of event time
    keys = [k async for k in redis_client.scan_iter(match=f"{isolated.redis_prefix}:*")]
    assert keys
    for key in keys:
        assert await redis_client.ttl(key) > 0, key
    [window_state] = [k for k in keys if k.endswith(b":wc")]
    # A head (tag, watermark, windows, when the expiry was set: 14 bytes), per window its
    # bounds and layout (12 bytes), and per window a ring of ceil(seconds / bucket) + 1
    # buckets of five float32 counters (req, out and the three cadence ones): the window's
    # buckets, never the whole history.
    cells = sum((math.ceil(w.seconds / w.bucket_s) + 1) * 5 for w in WINDOWS)
    assert await redis_client.strlen(window_state) == 14 + 12 * len(WINDOWS) + 4 * cells


async def test_decision_state_publishes_on_change_and_near_expiry_only(store: WindowStore) -> None:
    def proposal(action: str, rank: int, ts: float) -> StateProposal:
        return StateProposal(KEY, "enforce", action, rank, ts + 300, ts, "r")

    assert await store.decide([proposal("throttle", 1, T0)], renew_before_s=60) == [True]
    assert await store.decide([proposal("throttle", 1, T0 + 10)], renew_before_s=60) == [False]
    assert await store.decide([proposal("block", 3, T0 + 20)], renew_before_s=60) == [True]
    assert await store.decide([proposal("throttle", 1, T0 + 30)], renew_before_s=60) == [False]
    assert await store.decide([proposal("block", 3, T0 + 270)], renew_before_s=60) == [True]
    assert await store.decide([proposal("throttle", 1, T0 + 1000)], renew_before_s=60) == [True]


async def test_a_batch_of_proposals_is_decided_in_one_call_as_one_call_each_would(
    store: WindowStore, isolated: Settings
) -> None:
    """Every proposal of a batch goes in one script call, in order: the same outcomes (steps,
    strikes, sequences) as a call per proposal, including two proposals of one subject."""
    alone = WindowStore.from_url(
        isolated.redis_url,
        prefix=f"{isolated.redis_prefix}-alone",
        windows=WINDOWS,
        counters=("req", "out"),
        lateness_s=30,
    )
    ladder = (LadderStep(1, "block", 3, T0 + 3600), LadderStep(2, "block", 3, None))

    def proposals(ts: float) -> list[StateProposal]:
        batch = [
            StateProposal(Subject("api_key", f"k{i}"), mode, action, rank, ts + 300, ts, rule)
            for i in range(30)
            for mode, action, rank, rule in (
                [("enforce", "throttle", 1, "slow")] if i % 3 else [("shadow", "block", 3, "hard")]
            )
        ]
        laddered = StateProposal(KEY, "enforce", "throttle", 1, ts + 60, ts, "r", ladder, 600)
        stronger = StateProposal(KEY, "enforce", "block", 3, ts + 60, ts, "other")
        return [*batch, laddered, stronger, laddered]

    seen: list[DecideOutcome] = []
    try:
        for step in range(6):  # publications, suppressions, renewals and escalation steps
            ts = T0 + step * 100
            trips = store.round_trips
            together = await store.decide_outcomes(proposals(ts), 60, delivered_by="p")
            assert store.round_trips == trips + 1
            one_by_one = [
                (await alone.decide_outcomes([p], 60, delivered_by="p"))[0] for p in proposals(ts)
            ]
            assert together == one_by_one
            seen += together
        assert {o.publish for o in seen} == {True, False}
        assert {o.step for o in seen} >= {0, 1, 2}
    finally:
        await alone.drop_namespace()
        await alone.close()


async def test_scripts_lost_by_redis_are_reloaded_without_counting_twice(
    store: WindowStore, redis_client: aioredis.Redis
) -> None:
    from enforcer.core.counts import CampaignBatch, CampaignUse

    await store.update([SubjectBatch(KEY, counts(1, T0, 1, "warm"))])
    # Redis forgets every script (restart, SCRIPT FLUSH); one of them comes back before the
    # next batch, so that batch's window call runs while its campaign call meets NOSCRIPT.
    await redis_client.script_flush()
    await redis_client.script_load(store._update.source)
    campaign = CampaignBatch("f" * 16, T0 + 5, [CampaignUse("k-store", "198.51.100.0/24", "")])
    [stats], [used] = await store.update(
        [SubjectBatch(KEY, counts(5, T0 + 1, 1, "after"))], campaigns=[campaign]
    )
    assert (stats.accepted, stats.duplicates) == (5, 0)
    assert stats.sums["1m"]["req"] == 6
    assert used.keys == 1


async def test_a_started_update_counts_like_a_whole_one_while_other_calls_run_meanwhile(
    store: WindowStore, redis_client: aioredis.Redis
) -> None:
    pending = await store.start_update([SubjectBatch(KEY, counts(10, T0, 1))])
    # Decision state goes over another connection while the update's replies wait unread.
    proposal = StateProposal(KEY, "enforce", "block", 3, T0 + 60, T0, "r")
    assert await store.decide([proposal], renew_before_s=10) == [True]
    [first], _ = await pending.result()
    # The same after Redis lost its scripts: only the refused call is sent again.
    await redis_client.script_flush()
    pending = await store.start_update(
        [SubjectBatch(KEY, counts(10, T0, 1) + counts(3, T0 + 20, 1, "more"))]
    )
    [again], _ = await pending.result()
    assert (first.accepted, again.accepted, again.duplicates) == (10, 3, 10)
    assert again.sums["1m"]["req"] == 13


async def test_an_abandoned_update_leaves_no_reply_for_the_next_caller(
    store: WindowStore,
) -> None:
    pending = await store.start_update([SubjectBatch(KEY, counts(4, T0, 1))])
    await pending.abandon()
    [stats], _ = await store.update([SubjectBatch(KEY, counts(2, T0 + 1, 1, "next"))])
    assert stats.accepted == 2


async def test_a_narrowed_layout_keeps_only_the_counters_asked_for(store: WindowStore) -> None:
    [stats], _ = await store.update([SubjectBatch(KEY, counts(6, T0, 1.0))], columns=("out",))
    # "req" is always kept; cadence is not unless asked for.
    assert stats.sums["1m"] == {"req": 6, "out": 30}
    assert stats.layout.columns(("req", "out", "gaps")) == (0, 1, -1)


async def test_a_changed_layout_keeps_the_sums_both_layouts_share(store: WindowStore) -> None:
    await store.update([SubjectBatch(KEY, counts(6, T0, 1.0))], columns=("req",))
    # A reload that starts keeping "out" and cadence: the stored requests stay, the new
    # counters start from this batch.
    [wider], _ = await store.update(
        [SubjectBatch(KEY, counts(4, T0 + 6, 1.0, "wide"))], columns=("req", "out", "gaps")
    )
    assert wider.sums["1m"]["req"] == 10
    assert wider.sums["1m"]["out"] == 20
    assert wider.sums["1m"]["gaps"] == 4  # this batch's gaps, the first from the stored watermark
    # And back to fewer: what both hold is kept again.
    [narrower], _ = await store.update(
        [SubjectBatch(KEY, counts(1, T0 + 10, 1.0, "narrow"))], columns=("req",)
    )
    assert narrower.sums["1m"] == {"req": 11}
    [again], _ = await store.update(
        [SubjectBatch(KEY, counts(1, T0 + 11, 1.0, "again"))], columns=("req",)
    )
    assert again.sums["1m"] == {"req": 12}


@pytest.mark.parametrize(
    "foreign",
    [
        # The previous release's string of doubles: -layout, watermark, windows, expiry stamp,
        # then per window its bounds, newest bucket and cells.
        struct.pack("<4d", -3.0, T0, 1.0, T0) + struct.pack("<3d", 10.0, 2.0, T0 / 2) + bytes(8),
        b"\x02" + bytes(5),  # this layout's tag, cut short
        b"\x02" + bytes(200),  # this layout's tag, a length no state of it has
        struct.pack("<d", 5.0) * 12,  # an older format still, beginning with a bucket width
    ],
)
async def test_a_string_in_another_layout_starts_over(
    store: WindowStore, redis_client: aioredis.Redis, foreign: bytes
) -> None:
    key = keys.window_key(store.prefix, KEY)
    await redis_client.set(key, foreign, ex=600)
    [stats], _ = await store.update([SubjectBatch(KEY, counts(2, T0 + 3, 1.0, "later"))])
    assert (stats.accepted, stats.sums["1m"]["req"], stats.sums["1m"]["out"]) == (2, 2, 10)
    [again], _ = await store.update([SubjectBatch(KEY, counts(1, T0 + 5, 1.0, "again"))])
    assert again.sums["1m"]["req"] == 3


def test_a_counter_the_store_does_not_know_is_refused(store: WindowStore) -> None:
    with pytest.raises(ValueError, match="no counter named tokens"):
        store._codec._layout(("tokens",))


async def test_a_written_state_outlives_its_longest_window_and_renews_its_expiry(
    store: WindowStore, redis_client: aioredis.Redis
) -> None:
    longest = 600 + 30 + 60  # the 10m window, the lateness, a minute's margin
    key = keys.window_key(store.prefix, KEY)
    await store.update([SubjectBatch(KEY, counts(2, T0, 1.0))])
    assert await redis_client.ttl(key) > longest
    # A write keeps the expiry while more than `longest` of it is left...
    await redis_client.expire(key, longest + 100)
    await store.update([SubjectBatch(KEY, counts(1, T0 + 2, 1.0, "b"))])
    assert longest < await redis_client.ttl(key) <= longest + 100
    # ...and renews it once it was set long ago (the state records when, by Redis' clock).
    raw = await redis_client.get(key)
    (server_now, _) = await redis_client.time()
    stamped_long_ago = raw[:10] + struct.pack("<I", server_now - longest) + raw[14:]
    await redis_client.set(key, stamped_long_ago, keepttl=True)
    await store.update([SubjectBatch(KEY, counts(1, T0 + 3, 1.0, "c"))])
    assert await redis_client.ttl(key) > longest + 300
    [stats], _ = await store.update([SubjectBatch(KEY, counts(1, T0 + 4, 1.0, "d"))])
    assert stats.sums["1m"]["req"] == 5


async def test_a_reload_that_adds_and_reorders_windows_keeps_the_sums_already_counted(
    store: WindowStore, isolated: Settings
) -> None:
    await store.update([SubjectBatch(KEY, counts(3, T0, 1, "k"))], windows=WINDOWS[:2])
    # The reloaded policy lists its windows the other way round and adds the 10m one: the state
    # is laid out afresh, and each window it held keeps its cells.
    reloaded = WindowStore.from_url(
        isolated.redis_url,
        prefix=isolated.redis_prefix,
        windows=WINDOWS[::-1],
        counters=("req", "out"),
        lateness_s=30,
    )
    try:
        [stats], _ = await reloaded.update([SubjectBatch(KEY, counts(2, T0 + 3, 1, "r"))])
        held = {w: (stats.sums[w]["req"], stats.sums[w]["out"]) for w in ("10s", "1m", "10m")}
        assert held == {"10s": (5, 25), "1m": (5, 25), "10m": (2, 10)}
        [again], _ = await reloaded.update([SubjectBatch(KEY, counts(1, T0 + 5, 1, "a"))])
        assert (again.sums["1m"]["req"], again.sums["10m"]["req"]) == (6, 3)
    finally:
        await reloaded.close()


async def test_a_subject_judged_without_new_events_reads_a_window_it_never_kept_as_empty(
    store: WindowStore,
) -> None:
    # A subject whose events were all redelivered is judged again, and a reload may have added
    # a window its state does not hold yet: the script must answer, not fail the batch.
    await store.update([SubjectBatch(KEY, counts(3, T0, 1, "k"))], windows=WINDOWS[:1])
    stats = (await store.update([SubjectBatch(KEY, [])], windows=WINDOWS))[0][0]
    assert stats.accepted == 0
    assert stats.sums["10s"]["req"] == 3
    assert stats.sums["10m"]["req"] == 0


async def test_a_pending_publication_is_published_again_only_for_another_producer(
    store: WindowStore,
) -> None:
    """The worker judges its next batch while delivering this one: its own pending publication
    is on its way, while one pending under another producer's token may have died with it."""
    proposal = StateProposal(KEY, "enforce", "block", 3, T0 + 300, T0, "r")
    [first] = await store.decide_outcomes([proposal], 60, delivered_by="producer-a")
    assert first.publish
    [same] = await store.decide_outcomes([proposal], 60, delivered_by="producer-a")
    assert not same.publish
    [other] = await store.decide_outcomes([proposal], 60, delivered_by="producer-b")
    assert other.publish and other.strikes == first.strikes  # no second strike
    assert await store.confirm([Receipt(KEY, "enforce", other.sequence)]) == 1
    [after] = await store.decide_outcomes([proposal], 60, delivered_by="producer-c")
    assert not after.publish  # delivered: nothing pending any more


async def test_a_batch_of_receipts_is_confirmed_in_one_call_and_only_the_latest_counts(
    store: WindowStore,
) -> None:
    subjects = [Subject("api_key", f"k{i}") for i in range(20)]
    proposals = [StateProposal(s, "enforce", "block", 3, T0 + 300, T0, "r") for s in subjects]
    outcomes = await store.decide_outcomes(proposals, 60, delivered_by="producer-a")
    receipts = [Receipt(s, "enforce", o.sequence) for s, o in zip(subjects, outcomes, strict=True)]
    # The first subject was published again by another producer meanwhile: its receipt is stale.
    [again] = await store.decide_outcomes(proposals[:1], 60, delivered_by="producer-b")
    assert again.publish and again.sequence != receipts[0].sequence
    trips = store.round_trips
    assert await store.confirm(receipts) == len(receipts) - 1
    assert store.round_trips == trips + 1
    # Delivered: a later producer's verdict is not published again; the stale one still is.
    after = await store.decide_outcomes(proposals, 60, delivered_by="producer-c")
    assert [o.publish for o in after] == [True] + [False] * (len(receipts) - 1)


async def test_cells_read_back_what_was_written_within_the_float32_bound(
    store: WindowStore, redis_client: aioredis.Redis
) -> None:
    """Counts are exact in float32 cells; a token sum past 2^24 is rounded to 24 significant
    bits each time a batch writes it back, so after `writes` batches it is within
    writes * 2^-24 of the exact sum (relative)."""
    out = 3_000_017  # odd token counts, so that the sums need more than 24 bits
    writes = 40
    for batch in range(writes):
        events = counts(7, T0 + batch, 1 / 7, f"b{batch}-", out=out)
        [stats], _ = await store.update([SubjectBatch(KEY, events)])
    exact = writes * 7 * out
    assert exact > 2**24
    window = stats.sums["10m"]
    assert window["req"] == writes * 7
    assert window["gaps"] == writes * 7 - 1
    assert abs(window["out"] - exact) <= exact * writes * 2**-24
    # And the stored string holds cells of four bytes, not eight.
    key = keys.window_key(store.prefix, KEY)
    cells = sum((math.ceil(w.seconds / w.bucket_s) + 1) * 5 for w in WINDOWS)
    assert await redis_client.strlen(key) == 14 + 12 * len(WINDOWS) + 4 * cells


async def test_a_window_keeps_only_the_counters_read_in_it(
    store: WindowStore, redis_client: aioredis.Redis
) -> None:
    narrow = {"10s": ("req",), "1m": ("req", "out")}  # 10m names none: it keeps them all
    [stats], _ = await store.update([SubjectBatch(KEY, counts(6, T0, 1.0))], window_columns=narrow)
    assert stats.sums["10s"] == {"req": 6, "out": 0, "gaps": 0, "gap_sum": 0, "gap_squares": 0}
    assert stats.sums["1m"] == {"req": 6, "out": 30, "gaps": 0, "gap_sum": 0, "gap_squares": 0}
    assert stats.sums["10m"] == {
        "req": 6,
        "out": 30,
        "gaps": 5,
        "gap_sum": 500,
        "gap_squares": 50000,
    }
    key = keys.window_key(store.prefix, KEY)
    slots = {w.name: math.ceil(w.seconds / w.bucket_s) + 1 for w in WINDOWS}
    cells = slots["10s"] * 1 + slots["1m"] * 2 + slots["10m"] * 5
    assert await redis_client.strlen(key) == 14 + 12 * len(WINDOWS) + 4 * cells
    # A reload that reads "out" in 10s too: the requests stay, "out" starts from this batch;
    # the 1m window keeps both its sums.
    wider = {"10s": ("req", "out"), "1m": ("req", "out")}
    [after], _ = await store.update(
        [SubjectBatch(KEY, counts(2, T0 + 6, 1.0, "wide"))], window_columns=wider
    )
    assert (after.sums["10s"]["req"], after.sums["10s"]["out"]) == (8, 10)
    assert (after.sums["1m"]["req"], after.sums["1m"]["out"]) == (8, 40)
