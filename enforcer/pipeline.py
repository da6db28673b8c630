"""One batch through every step: event -> features -> windows -> detectors -> policy -> decision.

The worker, the backtest and the tests all call Pipeline.process, so what a backtest shows is
what the worker does. This module holds no Kafka code: it takes raw records and returns the
decisions to publish and the records to dead-letter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from enforcer.decisions import ACTION_RANK, Decision, Subject
from enforcer.detectors import signals_of
from enforcer.events import GatewayEvent, InvalidEvent, parse_event
from enforcer.features.volume import COUNTERS, counters_of
from enforcer.policy.evaluate import evaluate
from enforcer.policy.model import Policy
from enforcer.settings import Settings
from enforcer.subjects import subjects_of
from enforcer.windows.store import (
    EventCounts,
    StateProposal,
    SubjectBatch,
    WindowStats,
    WindowStore,
)


class Record(NamedTuple):
    """A raw record as it came off a topic (or a line of a file)."""

    value: bytes
    key: bytes | None = None
    topic: str = ""
    partition: int | None = None
    offset: int | None = None


class DeadLetter(NamedTuple):
    record: Record
    reason: str
    detail: str


@dataclass(slots=True)
class BatchResult:
    decisions: list[Decision] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events: int = 0
    duplicates: int = 0
    parsed: list[GatewayEvent] = field(default_factory=list)
    stats: list[WindowStats] = field(default_factory=list)
    # Event time of the newest event per decision, for event-time-to-decision latency.
    newest_event_ts: float | None = None


class PolicyHolder:
    """The policy in force. Swapped whole on reload, so a batch sees one policy throughout."""

    def __init__(self, policy: Policy) -> None:
        self.current = policy


class Pipeline:
    def __init__(
        self,
        store: WindowStore,
        policy: PolicyHolder,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        check_future: bool = True,
    ) -> None:
        self.store = store
        self.policy = policy
        self.settings = settings
        self.clock = clock
        # A replay of old or simulated traffic has no wall clock to be "ahead" of.
        self.check_future = check_future
        # Newest event time seen per source partition. Lateness is judged per partition: one
        # lagging partition must not make another's on-time events look late.
        self.watermarks: dict[tuple[str, int | None], float] = {}

    async def process(self, records: Sequence[Record]) -> BatchResult:
        result = BatchResult()
        events = self._parse(records, result)
        result.parsed = events
        if not events:
            return result
        policy = self.policy.current
        batches, tiers = self._group(events)
        stats = await self.store.update(batches, policy.windows)
        result.stats = stats
        now = self.clock()

        proposals: list[StateProposal] = []
        pending: list[Decision] = []
        for stat in stats:
            if stat.subject.kind == "api_key":  # every event has exactly one key
                result.events += stat.accepted
                result.duplicates += stat.duplicates
            if stat.accepted == 0 or stat.watermark is None:
                continue
            signals = signals_of(stat, policy.windows, policy.burst)
            for verdict in evaluate(policy, stat.subject, signals, tiers.get(stat.subject)):
                expires = stat.watermark + verdict.duration_s
                proposals.append(
                    StateProposal(
                        stat.subject,
                        verdict.mode,
                        verdict.action,
                        ACTION_RANK[verdict.action],
                        expires,
                        stat.watermark,
                        verdict.rule,
                    )
                )
                pending.append(
                    Decision(
                        subject=stat.subject,
                        action=verdict.action,
                        ts=stat.watermark,
                        issued_at=now,
                        expires_at=expires,
                        rule=verdict.rule,
                        policy_version=policy.version_tag,
                        mode=verdict.mode,
                        limit_rps=verdict.limit_rps,
                        reasons=verdict.reasons,
                    )
                )
        publish = await self.store.decide(proposals, self.settings.decision_renew_before_s)
        result.decisions = [d for d, ok in zip(pending, publish, strict=True) if ok]
        result.newest_event_ts = max(e.ts for e in events)
        return result

    def _parse(self, records: Sequence[Record], result: BatchResult) -> list[GatewayEvent]:
        events = []
        limit = self.settings.max_event_bytes
        lateness = self.settings.allowed_lateness_s
        horizon = self.clock() + self.settings.max_future_skew_s if self.check_future else None
        for record in records:
            try:
                event = parse_event(record.value, limit)
            except InvalidEvent as exc:
                result.dead_letters.append(DeadLetter(record, exc.reason, exc.detail))
                continue
            if horizon is not None and event.ts > horizon:
                result.dead_letters.append(
                    DeadLetter(record, "from_future", f"ts {event.ts:.3f} is ahead of the clock")
                )
                continue
            source = (record.topic, record.partition)
            watermark = self.watermarks.get(source)
            if watermark is not None and event.ts < watermark - lateness:
                late_by = watermark - event.ts
                result.dead_letters.append(
                    DeadLetter(
                        record,
                        "too_late",
                        f"ts is {late_by:.1f}s behind the stream (allowed {lateness:g}s)",
                    )
                )
                continue
            if watermark is None or event.ts > watermark:
                self.watermarks[source] = event.ts
            events.append(event)
        return events

    @staticmethod
    def _group(events: list[GatewayEvent]) -> tuple[list[SubjectBatch], dict[Subject, str]]:
        grouped: dict[Subject, list[EventCounts]] = {}
        tiers: dict[Subject, str] = {}
        for event in events:
            counts = EventCounts(event.event_id, event.ts, counters_of(event))
            for subject in subjects_of(event):
                grouped.setdefault(subject, []).append(counts)
                if event.tier and subject.kind in ("api_key", "account"):
                    tiers[subject] = event.tier
        return [SubjectBatch(s, evs) for s, evs in grouped.items()], tiers


def make_store(settings: Settings, policy: Policy, prefix: str | None = None) -> WindowStore:
    return WindowStore.from_url(
        settings.redis_url,
        timeout_s=settings.redis_timeout_s,
        prefix=prefix or settings.redis_prefix,
        windows=policy.windows,
        counters=COUNTERS,
        lateness_s=settings.allowed_lateness_s,
    )
