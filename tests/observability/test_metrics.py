"""Metrics: every one documented, bounded views, per-batch counting, the Redis edge."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

import enforcer.worker.app  # noqa: F401  (imports every module that could define a metric)
from enforcer.core.counts import StateProposal, Window
from enforcer.core.decisions import Decision, Reason, Subject
from enforcer.core.events import parse_event
from enforcer.core.ports import StorageError
from enforcer.core.settings import Settings
from enforcer.engine.pipeline import BatchResult, DeadLetter, Record
from enforcer.engine.policy import Policy
from enforcer.store.windows import WindowStore
from enforcer.worker import metrics
from tests.conftest import event, free_port

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0


def sample(name: str, /, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def decision(
    key: str,
    action: str = "throttle",
    mode: str = "enforce",
    lifetime: float = 300.0,
    issued_at: float = T0,
    kind: str = "api_key",
) -> Decision:
    return Decision(
        subject=Subject(kind, key),
        action=action,
        ts=T0 - 1000,  # event time may lag the wall clock; expiry follows the lifetime
        issued_at=issued_at,
        expires_at=T0 - 1000 + lifetime,
        rule="key-burst",
        policy_version="default@1#abc",
        mode=mode,
        reasons=(Reason("volume", "rps", 9.0, 4.0, "10s"),),
    )


def readme_metrics_section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Metrics\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "README.md has no '## Metrics' section"
    return match.group(1)


def test_readme_lists_every_registered_metric_with_its_meaning() -> None:
    registered = set()
    for family in REGISTRY.collect():
        if family.name.startswith("enforcer_"):
            suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
            registered.add(family.name + suffix)
    defined = {metrics.exported_name(m) for m in metrics.all_metrics()}
    assert registered == defined, (
        "an enforcer_ metric is defined outside enforcer/worker/metrics.py"
    )
    section = readme_metrics_section()
    assert metrics.markdown_table() in section, (
        "README's metrics table is stale: paste `enforcer metrics --markdown` into '## Metrics'"
    )
    documented = set(re.findall(r"^\| `(enforcer_\w+)`", section, re.M))
    assert documented == registered


def test_active_view_counts_live_decisions_and_forgets_expired_and_lifted_ones() -> None:
    now = [T0]
    view = metrics.ActiveDecisions(clock=lambda: now[0])
    view.add([decision("a"), decision("b", "block", lifetime=1800), decision("c", mode="shadow")])
    counts = view.refresh()
    assert counts[("throttle", "api_key", "enforce")] == 1
    assert counts[("block", "api_key", "enforce")] == 1
    assert counts[("throttle", "api_key", "shadow")] == 1
    labels = {"action": "block", "subject_kind": "api_key", "mode": "enforce"}
    assert sample("enforcer_active_subjects", **labels) == 1

    view.add([decision("a", "block", lifetime=600)])  # a stronger decision replaces the throttle
    view.add([decision("c", "allow", mode="shadow")])  # an allow lifts the subject
    counts = view.refresh()
    assert counts[("throttle", "api_key", "enforce")] == 0
    assert counts[("block", "api_key", "enforce")] == 2
    assert counts[("throttle", "api_key", "shadow")] == 0

    now[0] = T0 + 601  # a's block (600 s) ended; b's (1800 s) holds
    counts = view.refresh()
    assert counts[("block", "api_key", "enforce")] == 1
    assert len(view) == 1


def test_active_view_is_bounded_and_drops_the_least_recently_published() -> None:
    view = metrics.ActiveDecisions(capacity=3, clock=lambda: T0)
    view.add([decision(f"k{i}") for i in range(5)])
    view.add([decision("k2")])  # republished: now the most recent
    view.add([decision("k9")])
    assert len(view) == 3
    assert set(view._live) == {
        ("api_key:k4", "enforce"),
        ("api_key:k2", "enforce"),
        ("api_key:k9", "enforce"),
    }


def test_a_batch_is_counted_by_result_reason_and_decision() -> None:
    before = {
        "counted": sample("enforcer_events_processed_total", result="counted"),
        "duplicate": sample("enforcer_events_processed_total", result="duplicate"),
        "too_late": sample("enforcer_events_processed_total", result="too_late"),
        "rejected": sample("enforcer_events_rejected_total", reason="malformed_json"),
        "decisions": sample(
            "enforcer_decisions_total",
            action="throttle",
            rule="key-burst",
            mode="enforce",
            subject_kind="api_key",
        ),
        "latency": sample("enforcer_event_to_decision_seconds_count"),
    }
    parsed = [parse_event(orjson.dumps(event("k1", T0 - i))) for i in range(10)]
    result = BatchResult(
        decisions=[decision("k1"), decision("k2")],
        dead_letters=[DeadLetter(Record(b"{"), "malformed_json", "eof")],
        events=7,
        duplicates=2,
        parsed=parsed,  # 10 valid events: 7 counted, 2 duplicates, so 1 too late
        newest_event_ts=T0,
    )
    metrics.batch_published(result, now=T0 + 0.25)
    assert sample("enforcer_events_processed_total", result="counted") - before["counted"] == 7
    assert sample("enforcer_events_processed_total", result="duplicate") - before["duplicate"] == 2
    assert sample("enforcer_events_processed_total", result="too_late") - before["too_late"] == 1
    rejected = sample("enforcer_events_rejected_total", reason="malformed_json")
    assert rejected - before["rejected"] == 1
    assert (
        sample(
            "enforcer_decisions_total",
            action="throttle",
            rule="key-burst",
            mode="enforce",
            subject_kind="api_key",
        )
        - before["decisions"]
        == 2
    )
    assert sample("enforcer_event_to_decision_seconds_count") - before["latency"] == 1


def test_a_batch_stage_is_the_time_between_its_two_stamps_in_pipeline_order() -> None:
    stages = ("feature", "queued", "count", "judge", "deliver")
    before = {s: sample("enforcer_batch_stage_seconds_sum", stage=s) for s in stages}
    counts = {s: sample("enforcer_batch_stage_seconds_count", stage=s) for s in stages}
    # fetched, featured, taken, counted, judged, delivered
    metrics.batch_stages((100.0, 100.001, 100.003, 100.006, 100.010, 100.015))
    for stage, seconds in zip(stages, (0.001, 0.002, 0.003, 0.004, 0.005), strict=True):
        added = sample("enforcer_batch_stage_seconds_sum", stage=stage) - before[stage]
        assert added == pytest.approx(seconds), stage
        assert sample("enforcer_batch_stage_seconds_count", stage=stage) - counts[stage] == 1


def test_loading_a_policy_publishes_its_version_and_starts_its_rule_series(policy: Policy) -> None:
    metrics.policy_loaded(policy)
    assert (
        sample(
            "enforcer_policy_info",
            name=policy.name,
            version=policy.version,
            content_hash=policy.content_hash,
        )
        == 1
    )
    for rule in policy.rules:
        mode = "shadow" if policy.mode == "shadow" or rule.shadow else "enforce"
        value = REGISTRY.get_sample_value(
            "enforcer_decisions_total",
            {"action": rule.action, "rule": rule.name, "mode": mode, "subject_kind": rule.subject},
        )
        assert value is not None, rule.name


def _proposal(key: str) -> StateProposal:
    return StateProposal(Subject("api_key", key), "enforce", "throttle", 1, T0 + 300, T0, "r")


async def test_redis_round_trips_are_timed_and_failures_counted_by_script(
    isolated: Settings,
) -> None:
    windows = (Window.of("10s", 10),)
    store = WindowStore.from_url(
        isolated.redis_url,
        prefix=isolated.redis_prefix,
        windows=windows,
        counters=("req",),
        lateness_s=30,
        observer=metrics.StoreMetrics(),
    )
    calls = sample("enforcer_redis_call_seconds_count", script="decide")
    try:
        await store.decide([_proposal(f"k{i}") for i in range(50)], renew_before_s=60)
    finally:
        await store.close()
    # Fifty proposals, one pipelined round trip, one observation.
    assert sample("enforcer_redis_call_seconds_count", script="decide") - calls == 1

    dead = WindowStore.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        timeout_s=0.5,
        prefix=isolated.redis_prefix,
        windows=windows,
        counters=("req",),
        lateness_s=30,
        observer=metrics.StoreMetrics(),
    )
    errors = sample("enforcer_redis_errors_total", script="decide", error="unavailable")
    try:
        with pytest.raises(StorageError):
            await dead.decide([_proposal("k")], renew_before_s=60)
    finally:
        await dead.close()
    assert sample("enforcer_redis_errors_total", script="decide", error="unavailable") - errors == 1


def test_campaigns_tracked_counts_shared_templates_within_the_window() -> None:
    from enforcer.core.counts import CampaignStats
    from enforcer.worker.metrics import CampaignView

    view = CampaignView(window_s=600)
    view.observe([CampaignStats("a", 40, 30, 40), CampaignStats("b", 3, 3, 3)], ts=1000.0)
    assert view.tracked() == 1  # "b" is too small to be a campaign
    view.observe([CampaignStats("c", 12, 9, 12)], ts=1500.0)
    assert view.tracked() == 2
    view.observe([CampaignStats("c", 13, 9, 13)], ts=1700.0)  # "a" fell out of the window
    assert view.tracked() == 1


def test_the_campaigns_gauge_reads_the_workers_view_when_scraped() -> None:
    from enforcer.core.counts import CampaignStats
    from enforcer.worker.metrics import CAMPAIGNS, CAMPAIGNS_TRACKED

    CAMPAIGNS.observe([CampaignStats("scraped", 50, 20, 30)], ts=9e9)
    [family] = CAMPAIGNS_TRACKED.collect()
    assert family.samples[0].value == CAMPAIGNS.tracked() >= 1
