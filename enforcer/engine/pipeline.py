"""One batch through every step: event -> features -> windows -> detectors -> policy -> decision.

The worker, the backtest and the tests all call Pipeline.process, so what a backtest shows is
what the worker does. This module holds no Kafka code: it takes raw records and returns the
decisions to publish and the records to dead-letter.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from enforcer.core.counts import (
    CampaignStats,
    Counted,
    DecideOutcome,
    Receipt,
    StateProposal,
)
from enforcer.core.decisions import ACTION_RANK, Decision, Subject
from enforcer.core.events import GatewayEvent, InvalidEvent, parse_event
from enforcer.core.keyhash import hasher_from_settings
from enforcer.core.ports import Reply, WindowStorage
from enforcer.core.settings import Settings
from enforcer.engine.detectors import signals_of
from enforcer.engine.features.request import RequestFeatures
from enforcer.engine.featurize import Featured
from enforcer.engine.gate import RepeatGate
from enforcer.engine.grouping import Grouped, group
from enforcer.engine.hops import NetworkHops
from enforcer.engine.policy.compiled import CompiledPolicy
from enforcer.engine.policy.evaluate import Verdict, escalated, ladder_of
from enforcer.engine.policy.model import Policy


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
    campaigns: list[CampaignStats] = field(default_factory=list)
    # Event time of the newest event per decision, for event-time-to-decision latency.
    newest_event_ts: float | None = None
    # The decisions' publications in decision state, to confirm once the producer has them
    # (only when the pipeline awaits delivery; see WindowStore.start_decide).
    receipts: list[Receipt] = field(default_factory=list)
    # Events a subject's windows refused as older than they still hold, by subject kind.
    too_late: dict[str, int] = field(default_factory=dict)


class Draft(NamedTuple):
    """A verdict whose decision is built only if decision state publishes it: few are, since
    most verdicts restate an action already standing."""

    subject: Subject
    ts: float  # the subject's watermark: the decision's event time
    verdict: Verdict
    expires_at: float


class Judged(NamedTuple):
    """A batch evaluated, its decision state in flight (see Pipeline.judge)."""

    result: BatchResult
    drafts: list[Draft]  # one per verdict, in the order of decision state's replies
    outcomes: Reply[list[DecideOutcome]] | None
    issued_at: float = 0.0
    policy_version: str = ""


class Prepared(NamedTuple):
    """A batch after the CPU-only steps (parse, features, grouping), ready for Redis."""

    result: BatchResult
    events: list[GatewayEvent]
    grouped: Grouped | None
    compiled: CompiledPolicy


class PolicyHolder:
    """The policy in force, compiled. Swapped whole on reload, so a batch sees one policy
    throughout."""

    def __init__(self, policy: Policy) -> None:
        self.compiled = CompiledPolicy(policy)

    @property
    def current(self) -> Policy:
        return self.compiled.policy

    @current.setter
    def current(self, policy: Policy) -> None:
        self.compiled = CompiledPolicy(policy)


class Pipeline:
    def __init__(
        self,
        store: WindowStorage,
        policy: PolicyHolder,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        check_future: bool = True,
        awaits_delivery: bool = False,
    ) -> None:
        self.store = store
        self.policy = policy
        self.settings = settings
        self.clock = clock
        # A replay of old or simulated traffic has no wall clock to be "ahead" of.
        self.check_future = check_future
        # The live worker confirms each decision once Kafka has it (see BatchResult.receipts);
        # until then decision state does not let it suppress the same verdict again.
        self.awaits_delivery = awaits_delivery
        # Names this process's producer in decision state: a publication pending under another
        # name was left by a worker that may have died before delivering it.
        self.delivered_by = uuid.uuid4().hex[:16] if awaits_delivery else ""
        # Newest event time seen per source partition. Lateness is judged per partition: one
        # lagging partition must not make another's on-time events look late.
        self.watermarks: dict[tuple[str, int | None], float] = {}
        self.gate = RepeatGate(epoch_s=settings.content_window_s)
        self.hops = NetworkHops()
        # With ENFORCER_API_KEY_HASH_KEY, keys are hashed as events are parsed, so no window,
        # decision or log line downstream holds the key itself.
        self.hash_api_key = hasher_from_settings(settings)

    def renew_delivery_token(self) -> None:
        """A batch whose output may never reach the producer (its run failed and is retried):
        its publications, pending under the old token, are published again when met."""
        if self.awaits_delivery:
            self.delivered_by = uuid.uuid4().hex[:16]

    async def process(self, records: Sequence[Record]) -> BatchResult:
        """One batch through every stage, start to end. A replay overlaps the stages of
        successive batches instead (see enforcer.engine.staged)."""
        prepared = self.prepare(records)
        reply = await self.count(prepared)
        counted = await reply.result() if reply is not None else None
        return await self.settle(await self.judge(prepared, counted))

    def prepare(
        self, records: Sequence[Record], featured: Sequence[Featured] | None = None
    ) -> Prepared:
        """Parse, extract features and group a batch: CPU only, no I/O, so a replay can prepare
        the next batch while Redis works on this one. `featured`, one per record, is the parse
        and features already done elsewhere (see enforcer.engine.featurize); it must have been
        computed with bands if the plan reads template shares."""
        result = BatchResult()
        events, features = self._parse(records, result, featured)
        result.parsed = events
        compiled = self.policy.compiled
        grouped = group(events, compiled.plan, self.gate, self.hops, features) if events else None
        return Prepared(result, events, grouped, compiled)

    async def count(self, prepared: Prepared) -> Reply[Counted] | None:
        """Send the batch's window update and return without reading the replies, so that a
        replay can prepare its next batch, or settle its previous one, while Redis counts."""
        if prepared.grouped is None:
            return None
        grouped = prepared.grouped
        return await self.store.start_update(
            grouped.batches,
            prepared.compiled.policy.windows,
            grouped.campaigns,
            prepared.compiled.plan.columns,
            prepared.compiled.plan.window_columns,
        )

    async def settle(self, judged: Judged) -> BatchResult:
        """Read the decision state's replies: which verdicts are published, at which step."""
        result, drafts, outcomes, issued_at, policy_version = judged
        if outcomes is not None:
            published = [
                (draft, o)
                for draft, o in zip(drafts, await outcomes.result(), strict=True)
                if o.publish
            ]
            result.decisions = [
                escalated(
                    _decision(draft, issued_at, policy_version), draft.verdict, o.step, o.strikes
                )
                for draft, o in published
            ]
            if self.awaits_delivery:
                result.receipts = [
                    Receipt(draft.subject, draft.verdict.mode, o.sequence) for draft, o in published
                ]
        return result

    async def judge(
        self,
        prepared: Prepared,
        counted: Counted | None,
    ) -> Judged:
        """Signals and policy for a batch whose windows are counted, with its decision state
        sent to Redis and its replies not yet read (see settle). A replay works on while
        Redis answers; the next batch's decision state must wait for this one's replies."""
        result, events, grouped, compiled = prepared
        policy = compiled.policy
        if grouped is None or counted is None:
            return Judged(result, [], None)
        result.newest_event_ts = max(e.ts for e in events)
        stats, campaigns = counted
        result.campaigns = campaigns
        campaign_of = {c.fingerprint: c for c in campaigns}
        fingerprints = grouped.fingerprints

        no_campaigns: list[CampaignStats] = []  # shared, never changed: most subjects use none

        def used_by(subject: Subject) -> list[CampaignStats]:
            used = fingerprints.get(subject)
            if not used or not campaign_of:
                return no_campaigns
            return [campaign_of[f] for f in used if f in campaign_of]

        own_overrides = policy.subject_overrides
        allowed_accounts = policy.allow.accounts
        key_accounts = grouped.key_accounts
        now = self.clock()

        proposals: list[StateProposal] = []
        drafts: list[Draft] = []
        too_late = result.too_late
        for stat in stats:
            if stat.subject.kind == "api_key":  # every event has exactly one key
                result.events += stat.accepted
                result.duplicates += stat.duplicates
            if stat.too_late:
                kind = stat.subject.kind
                too_late[kind] = too_late.get(kind, 0) + stat.too_late
            # A subject with only redelivered events is judged again: the batch that counted
            # them may have died before its decisions reached Kafka (see decide.lua).
            if (stat.accepted == 0 and stat.duplicates == 0) or stat.watermark is None:
                continue
            subject = stat.subject
            if (
                allowed_accounts
                and subject.kind == "api_key"
                and key_accounts.get(subject.value) in allowed_accounts
            ):
                continue  # an operator vouched for the key's account
            tier = grouped.tiers.get(subject)
            used = used_by(subject)
            if subject not in own_overrides:  # a Subject is its (kind, value) key
                screen = compiled.screen(subject.kind, tier)
                if screen is not None and not screen.clears(stat, used):
                    continue
            signals = signals_of(stat, policy.windows, policy.burst, used)
            for verdict in compiled.evaluate(subject, signals, tier):
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
                        ladder_of(verdict, stat.watermark),
                        verdict.strikes_within_s,
                    )
                )
                drafts.append(Draft(subject, stat.watermark, verdict, expires))
        # decide.lua picks each rule's escalation step from its strikes in the same round trip.
        outcomes = await self.store.start_decide(
            proposals, self.settings.decision_renew_before_s, self.delivered_by
        )
        return Judged(result, drafts, outcomes, now, policy.version_tag)

    def _parse(
        self,
        records: Sequence[Record],
        result: BatchResult,
        featured: Sequence[Featured] | None = None,
    ) -> tuple[list[GatewayEvent], list[RequestFeatures] | None]:
        events = []
        features: list[RequestFeatures] | None = None if featured is None else []
        limit = self.settings.max_event_bytes
        lateness = self.settings.allowed_lateness_s
        horizon = self.clock() + self.settings.max_future_skew_s if self.check_future else None
        for i, record in enumerate(records):
            done: RequestFeatures | None = None
            if featured is not None:
                item = featured[i]
                if isinstance(item, InvalidEvent):
                    result.dead_letters.append(DeadLetter(record, item.reason, item.detail))
                    continue
                event, done = item
            else:
                try:
                    event = parse_event(record.value, limit)
                except InvalidEvent as exc:
                    result.dead_letters.append(DeadLetter(record, exc.reason, exc.detail))
                    continue
            if self.hash_api_key is not None:
                event = event._replace(api_key=self.hash_api_key(event.api_key))
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
            if features is not None and done is not None:
                features.append(done)
        return events, features


def _decision(draft: Draft, issued_at: float, policy_version: str) -> Decision:
    subject, ts, verdict, expires = draft
    return Decision(
        subject=subject,
        action=verdict.action,
        ts=ts,
        issued_at=issued_at,
        expires_at=expires,
        rule=verdict.rule,
        policy_version=policy_version,
        mode=verdict.mode,
        limit_rps=verdict.limit_rps,
        reasons=verdict.reasons,
    )


def merge_results(results: list[BatchResult]) -> BatchResult:
    """One result from the results of a batch's parts (a batch retried in halves)."""
    out = BatchResult()
    for r in results:
        out.decisions += r.decisions
        out.dead_letters += r.dead_letters
        out.events += r.events
        out.duplicates += r.duplicates
        out.parsed += r.parsed
        out.receipts += r.receipts
        for kind, n in r.too_late.items():
            out.too_late[kind] = out.too_late.get(kind, 0) + n
        if r.newest_event_ts is not None:
            out.newest_event_ts = max(out.newest_event_ts or r.newest_event_ts, r.newest_event_ts)
    return out
