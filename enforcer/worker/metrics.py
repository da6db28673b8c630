"""Every Prometheus metric enforcer exports, in one module, prefix `enforcer_`.

No label takes per-key values (api keys, IPs, accounts): label sets are small and fixed, so
cardinality stays bounded however much traffic there is. The worker observes once per batch
(plus once per decision and dead letter), never once per event, so the hot path stays cheap.
The README's metrics table is generated from this module (`enforcer metrics --markdown`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from enforcer.core.decisions import ACTIONS, MODES
from enforcer.core.subjects import SUBJECT_KINDS

if TYPE_CHECKING:
    from enforcer.core.counts import CampaignStats
    from enforcer.core.decisions import Decision
    from enforcer.engine.pipeline import BatchResult
    from enforcer.engine.policy.model import Policy

# A `_created` series per counter and histogram doubles what Prometheus stores for no query
# the dashboard or the alerts make.
disable_created_metrics()  # type: ignore[no-untyped-call]

POLICY_RELOADS = Counter(
    "enforcer_policy_reloads",
    "Policy reload attempts by result (success, failure); a failure keeps the last good policy",
    ["result"],
)
POLICY_LAST_RELOAD_SUCCESSFUL = Gauge(
    "enforcer_policy_last_reload_successful",
    "1 when the policy file on disk is the policy in force, 0 while the file holds an edit "
    "that was refused (the last good policy keeps running); stays 0 until a good edit",
)
POLICY_LAST_RELOAD_TIMESTAMP = Gauge(
    "enforcer_policy_last_reload_timestamp_seconds",
    "When the policy file was last judged (loaded at start-up, applied or refused), Unix time",
)
POLICY_INFO = Info("enforcer_policy", "The active policy: name, version and content hash")
POLICY_INFO_LABELS = ("name", "version", "content_hash")

EVENTS_CONSUMED = Counter(
    "enforcer_events_consumed", "Records taken from the events topic, valid or not"
)
EVENTS_PROCESSED = Counter(
    "enforcer_events_processed",
    "Valid events run through the windows, by result: counted, duplicate (a redelivery, "
    "counted before) or too_late (older than the windows accept)",
    ["result"],
)
EVENTS_REJECTED = Counter(
    "enforcer_events_rejected",
    "Records sent to the dead-letter topic, by reason (the enforcer.reason header)",
    ["reason"],
)
EVENTS_SKIPPED = Counter(
    "enforcer_events_skipped",
    "Records dropped uncounted because Redis failed and ENFORCER_REDIS_FAILURE=skip",
)
DEADLETTER_FAILURES = Counter(
    "enforcer_deadletter_failures",
    "Rejected records that could not be written to the dead-letter topic either; each is "
    "logged with its coordinates and skipped, so it never stops a partition",
)
ENGINE_ERRORS = Counter(
    "enforcer_engine_errors",
    "Batches the engine failed on for a reason other than Redis; the batch is retried in "
    "halves until the record at fault is found and dead-lettered (reason internal_error)",
)
SUBJECT_TOO_LATE = Counter(
    "enforcer_subject_events_too_late",
    "Events a subject's windows refused as older than any window it keeps, by subject kind",
    ["subject_kind"],
)
PARTITION_STALLED = Gauge(
    "enforcer_partition_stalled",
    "1 while an assigned events partition has lag and its processed offset has not moved for "
    "ENFORCER_STALL_AFTER_S; /readyz fails meanwhile",
    ["topic", "partition"],
)
BATCH_SIZE = Histogram(
    "enforcer_batch_size",
    "Records per batch taken from the stream (at most ENFORCER_BATCH_MAX)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
BATCH_PROCESSING_SECONDS = Histogram(
    "enforcer_batch_processing_seconds",
    "Wall time of one successful pipeline run over a batch: parse, Redis, detectors, policy",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENT_TO_DECISION_SECONDS = Histogram(
    "enforcer_event_to_decision_seconds",
    "From the newest event time in a batch to the batch's decisions handed to the producer, "
    "once per batch with valid events (a batch that changes nothing counts too)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
# Where a batch's time goes between fetch and delivery, stage by stage: the worker's processes
# and Redis share a machine's cores, and when event-to-decision time grows an operator needs to
# know which hand-off grew (the feature helper, Redis, the broker's acknowledgement).
BATCH_STAGES = ("feature", "queued", "count", "judge", "deliver")
BATCH_STAGE_SECONDS = Histogram(
    "enforcer_batch_stage_seconds",
    "Wall time of a batch in each stage of the live worker, once per batch: feature (fetched to"
    " parsed and featured by the helper), queued (waiting for the judge), count (prepared and"
    " counted in Redis), judge (policy and decision state), deliver (waiting for the previous"
    " batch's delivery, then the producer's acknowledgements). For a batch of several fetches"
    " the oldest fetch's times are used",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
# Every stage's series exists from the start; observed through its child, looked up once.
_STAGE_SERIES = [BATCH_STAGE_SECONDS.labels(stage) for stage in BATCH_STAGES]
CONSUMER_LAG = Gauge(
    "enforcer_consumer_lag",
    "Records in an assigned events partition not yet fetched by this worker "
    "(highwater - position), measured every few seconds",
    ["topic", "partition"],
)
REDIS_CALL_SECONDS = Histogram(
    "enforcer_redis_call_seconds",
    "Duration of one pipelined Redis round trip, by Lua script",
    ["script"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REDIS_ERRORS = Counter(
    "enforcer_redis_errors",
    "Failed Redis round trips, by script and error: unavailable (connection, timeout) "
    "or script (Redis refused the script)",
    ["script", "error"],
)
DECISIONS = Counter(
    "enforcer_decisions",
    "Decisions published to the decisions topic, by action, rule, mode (enforce, shadow) "
    "and subject kind",
    ["action", "rule", "mode", "subject_kind"],
)
ACTIVE_SUBJECTS = Gauge(
    "enforcer_active_subjects",
    "Subjects under a live throttle, degrade or block that this worker published, by action, "
    "subject kind and mode; refreshed every few seconds",
    ["action", "subject_kind", "mode"],
)
CAMPAIGNS_TRACKED = Gauge(
    "enforcer_campaigns_tracked",
    "Templates or system prompts shared by at least 10 api keys within the last content window, "
    "as this worker saw them",
)


class CampaignView:
    """The campaigns behind enforcer_campaigns_tracked: per tracked fingerprint, its latest key
    count and event time. Bounded: the stalest entries go first."""

    MIN_KEYS = 10

    def __init__(self, window_s: float = 600.0, max_entries: int = 20_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: dict[str, tuple[int, float]] = {}
        self._latest: float | None = None

    def observe(self, campaigns: Sequence[CampaignStats], ts: float | None) -> None:
        if ts is None:
            return
        self._latest = ts if self._latest is None else max(self._latest, ts)
        for c in campaigns:
            self._seen[c.fingerprint] = (c.keys, ts)
        if len(self._seen) > self.max_entries:
            stalest = sorted(self._seen.items(), key=lambda kv: kv[1][1])
            for fp, _ in stalest[: len(self._seen) // 4]:
                del self._seen[fp]

    def tracked(self) -> int:
        """Campaigns seen within the window of the newest event time. Counted when the gauge
        is scraped, not per batch: a scan of up to max_entries per batch cost the live worker
        about 4% of its CPU at 5,000 events/s."""
        if self._latest is None:
            return 0
        horizon = self._latest - self.window_s
        return sum(
            1 for keys, seen in self._seen.values() if seen >= horizon and keys >= self.MIN_KEYS
        )


CAMPAIGNS = CampaignView()
CAMPAIGNS_TRACKED.set_function(CAMPAIGNS.tracked)

# How often the worker measures consumer lag and refreshes the active-subjects gauge.
REFRESH_INTERVAL_S = 5.0
# Dead-letter reasons (topics/catalogue.yaml): their series exist from the start at zero.
REJECT_REASONS = (
    "malformed_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "oversize",
    "too_late",
    "from_future",
    "internal_error",
)
# A batch costs an update_windows round trip (campaign calls ride along) and a decide one.
REDIS_SCRIPTS = ("update_windows", "decide")
# The text format generate_latest writes (prometheus_client's newer "latest" names 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTED = EVENTS_PROCESSED.labels("counted")
_DUPLICATE = EVENTS_PROCESSED.labels("duplicate")
_TOO_LATE = EVENTS_PROCESSED.labels("too_late")
for _result in ("success", "failure"):
    POLICY_RELOADS.labels(_result)
for _reason in REJECT_REASONS:
    EVENTS_REJECTED.labels(_reason)
for _kind in SUBJECT_KINDS:
    SUBJECT_TOO_LATE.labels(_kind)
for _script in REDIS_SCRIPTS:
    REDIS_CALL_SECONDS.labels(_script)
    for _error in ("unavailable", "script"):
        REDIS_ERRORS.labels(_script, _error)


class ActiveDecisions:
    """A bounded in-process view of the live non-allow decisions this worker published.

    Counting live decisions in Redis would take a SCAN over every state key; the worker
    already sees each decision it publishes, so it keeps them here, keyed by subject and mode,
    with a wall-clock expiry (issued_at plus the decision's lifetime). Limits, by design:
    after a restart the view starts empty and fills as decisions are renewed (within
    ENFORCER_DECISION_RENEW_BEFORE_S of expiry), and with several workers a subject sits in
    the view of the worker that last published it, so dashboards sum over workers. When the
    view holds `capacity` subjects the least recently published one is dropped.
    """

    def __init__(self, capacity: int = 50_000, clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.clock = clock
        # (subject key, mode) -> (action, subject kind, expires at, wall clock)
        self._live: dict[tuple[str, str], tuple[str, str, float]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def add(self, decisions: Iterable[Decision]) -> None:
        for d in decisions:
            key = (d.subject.key, d.mode)
            # Re-inserting moves the subject to the end: dict order is publication order.
            self._live.pop(key, None)
            if d.action == "allow":
                continue
            lifetime = math.inf if d.expires_at is None else d.expires_at - d.ts
            self._live[key] = (d.action, d.subject.kind, d.issued_at + lifetime)
        while len(self._live) > self.capacity:
            del self._live[next(iter(self._live))]

    def refresh(self) -> dict[tuple[str, str, str], int]:
        """Drop expired entries and set the gauge; returns (action, kind, mode) -> count."""
        now = self.clock()
        counts = {
            (action, kind, mode): 0
            for action in ACTIONS
            if action != "allow"
            for kind in SUBJECT_KINDS
            for mode in MODES
        }
        expired = []
        for (subject_key, mode), (action, kind, until) in self._live.items():
            if until <= now:
                expired.append((subject_key, mode))
            else:
                counts[(action, kind, mode)] = counts.get((action, kind, mode), 0) + 1
        for key in expired:
            del self._live[key]
        for (action, kind, mode), n in counts.items():
            ACTIVE_SUBJECTS.labels(action, kind, mode).set(n)
        return counts


ACTIVE = ActiveDecisions()


def batch_taken(size: int) -> None:
    EVENTS_CONSUMED.inc(size)
    BATCH_SIZE.observe(size)


def batch_stages(times: Sequence[float]) -> None:
    """Observe a batch's stages from the perf_counter times that bound them: fetched,
    featured, taken, counted, judged and delivered (see BATCH_STAGES)."""
    for series, start, end in zip(_STAGE_SERIES, times, times[1:], strict=False):
        series.observe(max(0.0, end - start))


def batch_published(result: BatchResult, now: float) -> None:
    """Count a processed batch whose output went to the producer: a handful of updates per
    batch plus one per decision and dead letter."""
    # Each valid event was counted, a duplicate or too late for the windows (under its key).
    too_late = max(0, len(result.parsed) - result.events - result.duplicates)
    if result.events:
        _COUNTED.inc(result.events)
    if result.duplicates:
        _DUPLICATE.inc(result.duplicates)
    if too_late:
        _TOO_LATE.inc(too_late)
    for kind, n in result.too_late.items():
        SUBJECT_TOO_LATE.labels(kind).inc(n)
    for dead in result.dead_letters:
        EVENTS_REJECTED.labels(dead.reason).inc()
    for d in result.decisions:
        DECISIONS.labels(d.action, d.rule, d.mode, d.subject.kind).inc()
    if result.decisions:
        ACTIVE.add(result.decisions)
    if result.newest_event_ts is not None:
        EVENT_TO_DECISION_SECONDS.observe(max(0.0, now - result.newest_event_ts))
    if result.campaigns:
        CAMPAIGNS.observe(result.campaigns, result.newest_event_ts)


def policy_loaded(policy: Policy) -> None:
    """Publish the active policy and start its rules' decision series at zero, so rate() and
    increase() see a rule's first decision. Call at start-up and after each good reload."""
    values = (policy.name, policy.version, policy.content_hash)
    POLICY_INFO.info(dict(zip(POLICY_INFO_LABELS, values, strict=True)))
    for rule in policy.rules:
        mode = "shadow" if policy.mode == "shadow" or rule.shadow else "enforce"
        for action in {rule.action, *(step.action for step in rule.escalate)}:
            DECISIONS.labels(action, rule.name, mode, rule.subject)


def exposition() -> bytes:
    """The registry in Prometheus' text format, as /metrics serves it."""
    return generate_latest(REGISTRY)


def exported_name(metric: MetricWrapperBase) -> str:
    """The name a query uses: counters gain _total, info metrics _info."""
    suffix = {"counter": "_total", "info": "_info"}.get(metric._type or "", "")
    return str(metric._name) + suffix


def all_metrics() -> list[MetricWrapperBase]:
    return sorted(
        # Labelled children (bound with .labels()) are instances too; keep the parents.
        (m for m in globals().values() if isinstance(m, MetricWrapperBase) and not m._labelvalues),
        key=lambda m: m._name,
    )


def markdown_table() -> str:
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for metric in all_metrics():
        labels = POLICY_INFO_LABELS if metric is POLICY_INFO else metric._labelnames
        shown = ", ".join(f"`{label}`" for label in labels) or "-"
        rows.append(
            f"| `{exported_name(metric)}` | {metric._type} | {shown} | {metric._documentation} |"
        )
    return "\n".join(rows)


class StoreMetrics:
    """The window store's round trips and failures, reported into this registry (the store
    takes any observer; see enforcer.store.windows.StoreObserver)."""

    def call_finished(self, op: str, seconds: float) -> None:
        REDIS_CALL_SECONDS.labels(op).observe(seconds)

    def call_failed(self, op: str, kind: str) -> None:
        REDIS_ERRORS.labels(op, kind).inc()
