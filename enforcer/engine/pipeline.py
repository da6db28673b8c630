"""One batch through every step: event -> features -> windows -> detectors -> policy -> decision.

The worker, the backtest and the tests all call Pipeline.process, so what a backtest shows is
what the worker does. This module holds no Kafka code: it takes raw records and returns the
decisions to publish and the records to dead-letter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from enforcer.core.decisions import ACTION_RANK, Decision, Subject
from enforcer.core.events import GatewayEvent, InvalidEvent, parse_event
from enforcer.core.settings import Settings
from enforcer.core.subjects import EVENT_SUBJECT_KINDS, value_getter
from enforcer.engine.detectors import SIGNALS, signals_of
from enforcer.engine.features.request import COUNTERS, N_BANDS, RequestFeatures, features_of
from enforcer.engine.featurize import Featured
from enforcer.engine.gate import RepeatGate
from enforcer.engine.hops import NetworkHops
from enforcer.engine.policy.evaluate import Verdict, escalated, evaluate, ladder_of
from enforcer.engine.policy.model import Policy
from enforcer.engine.policy.screen import screen_for
from enforcer.store.windows import (
    CADENCE,
    CampaignBatch,
    CampaignStats,
    CampaignUse,
    Counted,
    DecideOutcome,
    EventCounts,
    Pending,
    PendingUpdate,
    Receipt,
    StateProposal,
    SubjectBatch,
    WindowStats,
    WindowStore,
)

# Subjects whose campaign links and tier are tracked: the ones an operator owns.
TEMPLATE_SUBJECTS = ("api_key", "account")
# Subjects whose template shares are kept in Redis; an account's keys carry its content profile.
TEMPLATE_SHARE_SUBJECTS = ("api_key",)


TEMPLATE_SIGNALS = frozenset({"template_share", "near_duplicate_share", "distinct_template_ratio"})


class TrackingPlan(NamedTuple):
    """What the policy in force needs counted: which subject kinds, over which windows, and
    whether template shares and campaigns are read. Counting nothing a rule cannot read keeps
    Redis work per event proportional to the policy, as rate limiters count only configured
    descriptors. A reload that adds a rule on a new subject kind starts its windows empty."""

    windows: dict[str, tuple[str, ...]]  # subject kind -> names of the windows it keeps
    template_shares: bool
    campaigns: bool
    kinds: tuple[str, ...]  # the kinds of an event's subjects that are counted, in event order
    columns: tuple[str, ...]  # the counters kept per bucket (see WindowStore.update)


def tracking_plan(policy: Policy) -> TrackingPlan:
    # api_key is always counted: it is the gateway's own subject and the event accounting's.
    used: dict[str, set[str]] = {"api_key": set()}
    template_shares = campaigns = False
    columns = {"req"}
    for rule in policy.rules:
        windows = used.setdefault(rule.subject, set())
        for cond in rule.when:
            columns.update(SIGNALS[cond.signal].counters)
            if cond.window:
                windows.add(cond.window)
            if cond.signal == "burst":
                windows.update((policy.burst.short, policy.burst.baseline))
            template_shares |= (
                cond.signal in TEMPLATE_SIGNALS and rule.subject in TEMPLATE_SHARE_SUBJECTS
            )
            campaigns |= cond.signal.startswith("campaign_")
    order = [w.name for w in policy.windows]
    return TrackingPlan(
        {kind: tuple(n for n in order if n in names) for kind, names in used.items()},
        template_shares,
        campaigns,
        tuple(k for k in EVENT_SUBJECT_KINDS if k in used),
        tuple(c for c in (*COUNTERS, *CADENCE) if c in columns),
    )


# One counted kind while a batch is grouped (see Pipeline._group): its name, how an event
# names its subject, whether it tracks tiers and templates, and its subjects' events, tiers
# and tracked templates by subject value.
_KindTally = tuple[
    str,
    Callable[[GatewayEvent], str | None],
    bool,
    dict[str, list[EventCounts]],
    dict[str, str],
    dict[str, set[str]],
]


class Grouped(NamedTuple):
    batches: list[SubjectBatch]
    tiers: dict[Subject, str]
    campaigns: list[CampaignBatch]
    fingerprints: dict[Subject, set[str]]  # per key/account, the tracked templates it used
    # Each key's account, so that an allow-listed account exempts its keys as well.
    key_accounts: dict[str, str]


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
    campaigns: list[CampaignStats] = field(default_factory=list)
    signals: Mapping[Subject, dict[str, float]] = field(default_factory=dict)
    # Event time of the newest event per decision, for event-time-to-decision latency.
    newest_event_ts: float | None = None
    # The decisions' publications in decision state, to confirm once the producer has them
    # (only when the pipeline awaits delivery; see WindowStore.start_decide).
    receipts: list[Receipt] = field(default_factory=list)
    # Events a subject's windows refused as older than they still hold, by subject kind.
    too_late: dict[str, int] = field(default_factory=dict)


class Signals(Mapping[Subject, dict[str, float]]):
    """Every counted subject's signals, computed on first read. The pipeline computes them
    only for the subjects that clear the policy's screen (see enforcer.engine.policy.screen); tests
    and tools read any subject's."""

    def __init__(
        self,
        stats: Sequence[WindowStats],
        compute: Callable[[WindowStats], dict[str, float]],
    ) -> None:
        self._stats = stats
        self._by_subject: dict[Subject, WindowStats] | None = None  # built on first read
        self._compute = compute
        self._known: dict[Subject, dict[str, float]] = {}

    def remember(self, subject: Subject, signals: dict[str, float]) -> None:
        self._known[subject] = signals

    def _counted(self) -> dict[Subject, WindowStats]:
        # Only tests and tools read this mapping, so the batch does not pay for indexing it.
        if self._by_subject is None:
            self._by_subject = {
                s.subject: s for s in self._stats if s.accepted and s.watermark is not None
            }
        return self._by_subject

    def __getitem__(self, subject: Subject) -> dict[str, float]:
        found = self._known.get(subject)
        if found is None:
            found = self._known[subject] = self._compute(self._counted()[subject])
        return found

    def __iter__(self) -> Iterator[Subject]:
        return iter(self._counted())

    def __len__(self) -> int:
        return len(self._counted())


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
    outcomes: Pending[list[DecideOutcome]] | None
    issued_at: float = 0.0
    policy_version: str = ""


class Prepared(NamedTuple):
    """A batch after the CPU-only steps (parse, features, grouping), ready for Redis."""

    result: BatchResult
    events: list[GatewayEvent]
    grouped: Grouped | None
    policy: Policy


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
        # Newest event time seen per source partition. Lateness is judged per partition: one
        # lagging partition must not make another's on-time events look late.
        self.watermarks: dict[tuple[str, int | None], float] = {}
        self.gate = RepeatGate(epoch_s=settings.content_window_s)
        self.hops = NetworkHops()
        self._plan: tuple[Policy, TrackingPlan] | None = None

    def plan(self, policy: Policy) -> TrackingPlan:
        if self._plan is None or self._plan[0] is not policy:
            self._plan = (policy, tracking_plan(policy))
        return self._plan[1]

    async def process(self, records: Sequence[Record]) -> BatchResult:
        return await self.execute(self.prepare(records))

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
        policy = self.policy.current
        grouped = self._group(events, self.plan(policy), features) if events else None
        return Prepared(result, events, grouped, policy)

    async def execute(self, prepared: Prepared) -> BatchResult:
        """The Redis half of a batch: count, evaluate, decide."""
        pending = await self.start(prepared)
        return await self.conclude(prepared, await pending.result() if pending else None)

    async def start(self, prepared: Prepared) -> PendingUpdate | None:
        """Send the batch's window update and return without reading the replies, so that a
        replay can prepare its next batch, or conclude its previous one, while Redis counts."""
        if prepared.grouped is None:
            return None
        grouped = prepared.grouped
        return await self.store.start_update(
            grouped.batches,
            prepared.policy.windows,
            grouped.campaigns,
            self.plan(prepared.policy).columns,
        )

    async def conclude(
        self,
        prepared: Prepared,
        counted: Counted | None,
    ) -> BatchResult:
        """Signals, policy and decision state for a batch whose windows are counted."""
        return await self.settle(await self.judge(prepared, counted))

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
        result, events, grouped, policy = prepared
        if grouped is None or counted is None:
            return Judged(result, [], None)
        result.newest_event_ts = max(e.ts for e in events)
        stats, campaigns = counted
        result.stats, result.campaigns = stats, campaigns
        campaign_of = {c.fingerprint: c for c in campaigns}
        fingerprints = grouped.fingerprints

        def used_by(subject: Subject) -> list[CampaignStats]:
            return [campaign_of[f] for f in fingerprints.get(subject, ()) if f in campaign_of]

        signals_of_all = result.signals = Signals(
            stats,
            lambda stat: signals_of(stat, policy.windows, policy.burst, used_by(stat.subject)),
        )
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
                screen = screen_for(policy, subject.kind, tier)
                if screen is not None and not screen.clears(stat, used):
                    continue
            signals = signals_of(stat, policy.windows, policy.burst, used)
            signals_of_all.remember(subject, signals)
            for verdict in evaluate(policy, subject, signals, tier):
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
            proposals, self.settings.decision_renew_before_s, self.awaits_delivery
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

    def _group(
        self,
        events: list[GatewayEvent],
        plan: TrackingPlan,
        computed: list[RequestFeatures] | None = None,
    ) -> Grouped:
        uses: dict[str, list[CampaignUse]] = {}
        latest: dict[str, float] = {}
        # Subjects are keyed by value within their kind, so that a Subject is built once per
        # subject and batch, not once per event and kind.
        kinds: list[_KindTally] = [
            (k, value_getter(k), k in TEMPLATE_SUBJECTS, {}, {}, {}) for k in plan.kinds
        ]
        order: list[tuple[str, _KindTally]] = []  # (subject value, its kind) by first sighting
        moved = self.hops.moved
        key_tally = kinds[0]  # plan.kinds starts with api_key, always counted
        key_accounts: dict[str, str] = {}
        for i, event in enumerate(events):
            if computed is None:
                features = features_of(event, bands=plan.template_shares)
            else:
                features = computed[i]
            values = features.counters
            if moved(event.api_key, event.network):  # the last counter is "hop"
                values = (*values[:-1], 1)
            counts = EventCounts(
                event.event_id, event.ts, values, features.fingerprint, features.bands
            )
            # Campaigns link keys by the whole template and by the standing system prompt.
            tracked: list[str] = []
            if plan.campaigns:
                for fp in (
                    features.fingerprint,
                    "s" + features.system_fingerprint if features.system_fingerprint else "",
                ):
                    if fp and self.gate.seen_before(fp, event.ts):
                        tracked.append(fp)
                        uses.setdefault(fp, []).append(
                            CampaignUse(event.api_key, event.network, event.account_id or "")
                        )
                        latest[fp] = max(latest.get(fp, 0.0), event.ts)
            for tally in kinds:
                _, value_of, templated, events_of, tier_of, templates_of = tally
                value = value_of(event)
                if value is None:
                    continue
                found = events_of.get(value)
                if found is None:
                    found = events_of[value] = []
                    order.append((value, tally))
                    if tally is key_tally and event.account_id:
                        key_accounts[value] = event.account_id
                found.append(counts)
                if templated:
                    if event.tier:
                        tier_of[value] = event.tier
                    if tracked:
                        templates_of.setdefault(value, set()).update(tracked)
        new_subject = Subject._make
        batches: list[SubjectBatch] = []
        tiers: dict[Subject, str] = {}
        fingerprints: dict[Subject, set[str]] = {}
        for value, (kind, _, templated, events_of, tier_of, templates_of) in order:
            subject = new_subject((kind, value))
            batches.append(
                SubjectBatch(
                    subject,
                    events_of[value],
                    plan.template_shares and kind in TEMPLATE_SHARE_SUBJECTS,
                    plan.windows[kind],
                )
            )
            if templated:
                tier = tier_of.get(value)
                if tier is not None:
                    tiers[subject] = tier
                used = templates_of.get(value)
                if used is not None:
                    fingerprints[subject] = used
        campaigns = [CampaignBatch(fp, latest[fp], u) for fp, u in uses.items()]
        return Grouped(batches, tiers, campaigns, fingerprints, key_accounts)


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


def make_store(settings: Settings, policy: Policy, prefix: str | None = None) -> WindowStore:
    return WindowStore.from_url(
        settings.redis_url,
        timeout_s=settings.redis_timeout_s,
        prefix=prefix or settings.redis_prefix,
        windows=policy.windows,
        counters=COUNTERS,
        lateness_s=settings.allowed_lateness_s,
        content_window_s=settings.content_window_s,
        n_bands=N_BANDS,
    )
