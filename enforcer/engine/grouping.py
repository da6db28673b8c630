"""A batch's events grouped by subject: what each subject counts, its tier, and the templates
that link keys into campaigns."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from enforcer.core.counts import CampaignBatch, CampaignUse, EventCounts, SubjectBatch
from enforcer.core.decisions import Subject
from enforcer.core.events import GatewayEvent
from enforcer.core.subjects import TEMPLATE_SHARE_KINDS, TIERED_KINDS, value_getter
from enforcer.engine.features.request import RequestFeatures, features_of
from enforcer.engine.gate import RepeatGate
from enforcer.engine.hops import NetworkHops
from enforcer.engine.policy.compiled import TrackingPlan


class Grouped(NamedTuple):
    batches: list[SubjectBatch]
    tiers: dict[Subject, str]
    campaigns: list[CampaignBatch]
    fingerprints: dict[Subject, set[str]]  # per key/account, the tracked templates it used
    # Each key's account, so that an allow-listed account exempts its keys as well.
    key_accounts: dict[str, str]


class _KindTally:
    """One counted kind's subjects within a batch, keyed by value, so that a Subject is built
    once per subject and batch rather than once per event and kind."""

    __slots__ = ("kind", "value_of", "tiered", "events", "tiers", "templates")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.value_of: Callable[[GatewayEvent], str | None] = value_getter(kind)
        self.tiered = kind in TIERED_KINDS
        self.events: dict[str, list[EventCounts]] = {}
        self.tiers: dict[str, str] = {}
        self.templates: dict[str, set[str]] = {}


class _Campaigns:
    """The templates seen before (see RepeatGate) and who used them in this batch. Campaigns
    link keys by the whole template and by the standing system prompt, and, when the policy
    reads paraphrase signals, by reworded clauses (features.rewording)."""

    def __init__(self, gate: RepeatGate, linked: bool, reworded: bool) -> None:
        self.gate = gate
        self.linked = linked
        self.reworded = reworded
        self.uses: dict[str, list[CampaignUse]] = {}
        self.latest: dict[str, float] = {}

    def track(self, event: GatewayEvent, features: RequestFeatures) -> list[str]:
        tracked: list[str] = []
        if self.linked:
            system = features.system_fingerprint
            use = CampaignUse(event.api_key, event.network, event.account_id or "")
            self._add(tracked, (features.fingerprint, "s" + system if system else ""), use, event)
        if self.reworded and features.reworded:
            # A reworded phrase is counted by account and network only: keys within one account
            # add no evidence, and leaving them out spares Redis a third of the work per phrase.
            use = CampaignUse("", event.network, event.account_id or "")
            self._add(tracked, features.reworded, use, event)
        return tracked

    def _add(
        self, tracked: list[str], linking: tuple[str, ...], use: CampaignUse, event: GatewayEvent
    ) -> None:
        for fp in linking:
            if fp and self.gate.seen_before(fp, event.ts):
                tracked.append(fp)
                self.uses.setdefault(fp, []).append(use)
                self.latest[fp] = max(self.latest.get(fp, 0.0), event.ts)

    def batches(self) -> list[CampaignBatch]:
        return [CampaignBatch(fp, self.latest[fp], u) for fp, u in self.uses.items()]


def group(
    events: list[GatewayEvent],
    plan: TrackingPlan,
    gate: RepeatGate,
    hops: NetworkHops,
    computed: list[RequestFeatures] | None = None,
) -> Grouped:
    """Group a batch by the subjects the plan counts, in order of first sighting."""
    campaigns = _Campaigns(gate, plan.campaigns, plan.reworded)
    tracking = plan.campaigns or plan.reworded
    kinds = [_KindTally(k) for k in plan.kinds]
    order: list[tuple[str, _KindTally]] = []  # (subject value, its kind) by first sighting
    moved = hops.moved
    key_tally = kinds[0]  # plan.kinds starts with api_key, always counted
    key_accounts: dict[str, str] = {}
    for i, event in enumerate(events):
        features = features_of(event, plan.sketches) if computed is None else computed[i]
        values = features.counters
        if moved(event.api_key, event.network):  # the last counter is "hop"
            values = (*values[:-1], 1)
        counts = EventCounts(event.event_id, event.ts, values, features.fingerprint, features.bands)
        tracked = campaigns.track(event, features) if tracking else []
        for tally in kinds:
            value = tally.value_of(event)
            if value is None:
                continue
            found = tally.events.get(value)
            if found is None:
                found = tally.events[value] = []
                order.append((value, tally))
                if tally is key_tally and event.account_id:
                    key_accounts[value] = event.account_id
            found.append(counts)
            if tally.tiered:
                if event.tier:
                    tally.tiers[value] = event.tier
                if tracked:
                    tally.templates.setdefault(value, set()).update(tracked)
    return _grouped(order, plan, campaigns.batches(), key_accounts)


def _grouped(
    order: list[tuple[str, _KindTally]],
    plan: TrackingPlan,
    campaigns: list[CampaignBatch],
    key_accounts: dict[str, str],
) -> Grouped:
    # Run once per subject and batch (two subjects per event at 10^5 active keys): the tuples
    # are built with tuple.__new__, which skips a NamedTuple's Python-level __new__, and what
    # depends only on the kind is worked out once per kind.
    new = tuple.__new__
    batches: list[SubjectBatch] = []
    tiers: dict[Subject, str] = {}
    fingerprints: dict[Subject, set[str]] = {}
    per_kind: dict[str, tuple[bool, tuple[str, ...] | None]] = {}
    for value, tally in order:
        kind = tally.kind
        known = per_kind.get(kind)
        if known is None:
            known = per_kind[kind] = (
                plan.template_shares and kind in TEMPLATE_SHARE_KINDS,
                plan.windows[kind],
            )
        subject = new(Subject, (kind, value))
        batches.append(new(SubjectBatch, (subject, tally.events[value], *known)))
        if tally.tiered:
            tier = tally.tiers.get(value)
            if tier is not None:
                tiers[subject] = tier
            used = tally.templates.get(value)
            if used is not None:
                fingerprints[subject] = used
    return Grouped(batches, tiers, campaigns, fingerprints, key_accounts)
