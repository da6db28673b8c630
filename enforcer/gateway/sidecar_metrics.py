"""The check sidecar's Prometheus metrics (`GET /metrics`), prefix `enforcer_sidecar_`.

Each sidecar has its own CollectorRegistry: it is a different process from the worker, with
different metrics, and tests run several sidecars in one process. Answers are counted in plain
dicts on the hot path and turned into metric families only when scraped; the one histogram,
check latency, is observed per answer. No label takes per-request values, so the series are a
small fixed set however much traffic there is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from enforcer.gateway.cache import DecisionCache

# Scrapers that ask for the newest text format get the one the worker serves too.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Every (X-Enforcer-Action, status) pair the sidecar answers with, exported from zero so a
# rate() over a fresh sidecar starts at its first scrape, not at the first such answer.
ANSWERS = (
    ("allow", 200),
    ("degrade", 200),
    ("throttle", 200),
    ("throttle", 429),
    ("throttle", 403),
    ("block", 403),
    ("invalid", 400),
    ("invalid", 404),
    ("invalid", 405),
    ("invalid", 413),
    ("unavailable", 503),
    ("error", 500),
    ("error", 504),
)
# What a sidecar answering with ENFORCER_SIDECAR_FAILURE=open can be without.
DEPENDENCIES = ("kafka", "redis")
# Where a check's answer came from: memory only, or memory and the shared throttle in Redis.
SOURCES = ("memory", "redis")
CHECK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# A `_created` series per counter and histogram doubles what Prometheus stores for no query
# the dashboard or the alerts make (the worker's metrics make the same choice).
disable_created_metrics()  # type: ignore[no-untyped-call]


class SidecarMetrics:
    """What one sidecar counts, and its registry."""

    def __init__(self, cache: DecisionCache) -> None:
        self.cache = cache
        self.registry = CollectorRegistry(auto_describe=True)
        self.answers: Counter[tuple[str, int]] = Counter(dict.fromkeys(ANSWERS, 0))
        self.failed_open: Counter[str] = Counter(dict.fromkeys(DEPENDENCIES, 0))
        self.header_timeouts = 0
        check_seconds = Histogram(
            "enforcer_sidecar_check_seconds",
            "Time from a check request's arrival to its answer, by where the answer came from "
            "(memory, or memory and the shared throttle in Redis)",
            ["source"],
            buckets=CHECK_BUCKETS,
            registry=self.registry,
        )
        self.check_seconds = {source: check_seconds.labels(source) for source in SOURCES}
        self.registry.register(_Collector(self))

    def answered(self, action: str, status: int) -> None:
        self.answers[(action, status)] += 1

    def by_action(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (action, _), count in self.answers.items():
            if count:
                totals[action] += count
        return dict(totals)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    """Reads the sidecar's counts and its cache's state when scraped."""

    def __init__(self, metrics: SidecarMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self.metrics
        answers = CounterMetricFamily(
            "enforcer_sidecar_answers",
            "Answers to check requests (and to requests the sidecar could not parse), by "
            "X-Enforcer-Action and HTTP status",
            labels=["action", "status"],
        )
        for (action, status), count in sorted(m.answers.items()):
            answers.add_metric([action, str(status)], count)
        yield answers
        failed_open = CounterMetricFamily(
            "enforcer_sidecar_failed_open",
            "Checks answered without a dependency under ENFORCER_SIDECAR_FAILURE=open: kafka "
            "(decisions not current) or redis (a throttled subject let through uncounted)",
            labels=["dependency"],
        )
        for dependency in DEPENDENCIES:
            failed_open.add_metric([dependency], m.failed_open[dependency])
        yield failed_open
        yield CounterMetricFamily(
            "enforcer_sidecar_header_timeouts",
            "Connections closed because a request did not arrive whole within "
            "ENFORCER_SIDECAR_HEADER_TIMEOUT_S",
            value=m.header_timeouts,
        )
        stats = m.cache.stats()
        yield GaugeMetricFamily(
            "enforcer_sidecar_decisions", "Live decisions in the decision cache", value=stats.size
        )
        yield GaugeMetricFamily(
            "enforcer_sidecar_decision_lag",
            "Records on the decisions topic the cache has not read yet",
            value=stats.lag,
        )
        yield GaugeMetricFamily(
            "enforcer_sidecar_kafka_connected",
            "1 while fetches from the decisions topic arrive within "
            "ENFORCER_SIDECAR_STALE_AFTER_S, else 0",
            value=int(stats.connected),
        )
        yield GaugeMetricFamily(
            "enforcer_sidecar_caught_up",
            "1 once the cache has read the decisions topic to its end as of start-up, else 0",
            value=int(stats.ready),
        )
        yield CounterMetricFamily(
            "enforcer_sidecar_decisions_evicted",
            "Live decisions dropped to stay under ENFORCER_SIDECAR_MAX_ENTRIES",
            value=stats.evicted,
        )
        yield CounterMetricFamily(
            "enforcer_sidecar_invalid_decisions",
            "Records on the decisions topic that are not decision.v1 or name no valid subject",
            value=stats.invalid,
        )
        rejected = CounterMetricFamily(
            "enforcer_sidecar_unverified_decisions",
            "Records on the decisions topic ignored because ENFORCER_DECISION_SIGNING_KEY is set "
            "and they carry no signature (unsigned), one that does not verify (forged), or were"
            " issued before the subject's newest record or are tombstones with no signed issue"
            " time (replayed)",
            labels=["reason"],
        )
        rejected.add_metric(["unsigned"], stats.unsigned)
        rejected.add_metric(["forged"], stats.forged)
        rejected.add_metric(["replayed"], stats.replayed)
        yield rejected
