"""The window store against a plain model of what it promises, on real Redis: for any run of
batches (events out of order, late, redelivered, windows added and dropped by reloads), each
window's sum is that of the events counted in it, the oldest bucket weighted by its share
inside the window (see update_windows.lua)."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from enforcer.core.counts import EventCounts, SubjectBatch, Window
from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.store.windows import WindowStore

T0 = 1_790_000_000.0
# Rings of six buckets (10s) and of five (1m, 10m): both of the script's ways of summing.
WINDOWS = (Window.of("10s", 10), Window.of("1m", 60), Window.of("10m", 600))
LATENESS_S = 30
HORIZON_S = max(LATENESS_S, max(w.seconds for w in WINDOWS))


@dataclass
class Model:
    """One subject as the store should see it: the events counted, each with the batch that
    counted it, and since which batch each window its state holds has been kept. The state is
    written only by a batch that counts something, so a window a reload dropped is gone once
    such a batch has been written without it."""

    watermark: float | None = None
    seen: set[tuple[str, float]] = field(default_factory=set)
    counted: list[tuple[int, float, tuple[int, int]]] = field(default_factory=list)
    stored_since: dict[str, int] = field(default_factory=dict)
    kept_since: dict[str, int] = field(default_factory=dict)

    def count(
        self, index: int, events: list[EventCounts], kept: tuple[str, ...]
    ) -> tuple[int, int, int]:
        self.kept_since = {w: self.stored_since.get(w, index) for w in kept}
        accepted = duplicates = late = 0
        for ev in sorted(events, key=lambda e: e.ts):
            if self.watermark is not None and ev.ts < self.watermark - HORIZON_S:
                late += 1
            elif (ev.event_id, ev.ts) in self.seen:
                duplicates += 1
            else:
                self.seen.add((ev.event_id, ev.ts))
                self.counted.append((index, ev.ts, ev.values))
                accepted += 1
                self.watermark = ev.ts if self.watermark is None else max(self.watermark, ev.ts)
        if accepted:
            self.stored_since = self.kept_since
        return accepted, duplicates, late

    def sums(self, window: Window) -> tuple[float, float]:
        assert self.watermark is not None
        start = self.watermark - window.seconds
        oldest = math.floor(start / window.bucket_s)
        part = ((oldest + 1) * window.bucket_s - start) / window.bucket_s
        since = self.kept_since[window.name]
        total = [0.0, 0.0]
        for index, ts, values in self.counted:
            bucket = math.floor(ts / window.bucket_s)
            if index < since or bucket < oldest:
                continue
            weight = part if bucket == oldest else 1.0
            total[0] += weight * values[0]
            total[1] += weight * values[1]
        return total[0], total[1]


def _event(draw: st.DrawFn, n: int) -> EventCounts:
    ts = T0 + draw(st.integers(0, 1_500)) + draw(st.sampled_from((0.0, 0.25, 0.5, 0.999)))
    return EventCounts(f"e{n}", ts, (1, draw(st.integers(0, 9))))


@st.composite
def runs(draw: st.DrawFn) -> list[tuple[list[EventCounts], tuple[str, ...]]]:
    """Batches, each with the windows a (re)loaded policy keeps for it; some events are sent
    again in a later batch, as after a crash."""
    out: list[tuple[list[EventCounts], tuple[str, ...]]] = []
    sent: list[EventCounts] = []
    for b in range(draw(st.integers(1, 5))):
        events = [_event(draw, b * 100 + i) for i in range(draw(st.integers(0, 12)))]
        if sent:
            events += draw(st.lists(st.sampled_from(sent), max_size=4))
        sent += events
        kept = tuple(
            w.name for w in WINDOWS if draw(st.booleans()) or w.name == "1m"
        )  # one window at least
        out.append((events, kept))
    return out


async def _check(settings: Settings, run: list[tuple[list[EventCounts], tuple[str, ...]]]) -> None:
    store = WindowStore.from_url(
        settings.redis_url,
        prefix=settings.redis_prefix,
        windows=WINDOWS,
        counters=("req", "out"),
        lateness_s=LATENESS_S,
    )
    subject = Subject("api_key", f"k-model-{uuid.uuid4().hex[:10]}")
    model = Model()
    by_name = {w.name: w for w in WINDOWS}
    try:
        for index, (events, kept) in enumerate(run):
            [stats], _ = await store.update(
                [SubjectBatch(subject, events, windows=kept)], columns=("req", "out")
            )
            assert (stats.accepted, stats.duplicates, stats.too_late) == model.count(
                index, events, kept
            )
            assert stats.watermark == model.watermark
            if model.watermark is None:
                continue
            for name in kept:
                expected = model.sums(by_name[name])
                got = (stats.sums[name]["req"], stats.sums[name]["out"])
                assert got == pytest.approx(expected, rel=1e-6, abs=1e-6), (index, name)
    finally:
        await store.close()


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(run=runs())
def test_every_window_sums_the_events_counted_in_it_whatever_the_order_and_reloads(
    isolated: Settings, run: list[tuple[list[EventCounts], tuple[str, ...]]]
) -> None:
    asyncio.run(_check(isolated, run))
