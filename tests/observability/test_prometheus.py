"""Prometheus' own tools and a real Prometheus scraping a real worker and check sidecar: the
alert rules and every dashboard query are valid, the dashboard's panels show live traffic, and
the alerts fire on their scenarios and stay quiet on a healthy worker and sidecar."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaProducer

from enforcer.core.settings import Settings
from tests.conftest import event
from tests.gateway.conftest import SidecarProcess

from .conftest import (
    ALERT_RULES,
    DASHBOARD,
    PROMETHEUS_CONFIG,
    PrometheusProcess,
    binary,
    finite,
)

# Grafana's variables, as a dashboard would send them over a short range.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$instance": ".*",
}
# Panels that must show the simulated traffic; the others need only be valid queries.
PANELS_WITH_DATA = {
    "Events per second",
    "Consumer lag by partition",
    "Total consumer lag",
    "Workers up",
    "Batch size",
    "Event time to decision",
    "Batch processing time",
    "Batch time by stage",
    "Decisions by action (enforce vs shadow)",
    "Decisions by rule (enforce vs shadow)",
    "Decisions in the selected range",
    "Subjects throttled, degraded, blocked now",
    "Redis round-trip latency",
    "Redis round trips and errors",
    "Active policy",
    "Sidecar answers by action and status",
    "Sidecar check latency",
    "Sidecars up",
    "Sidecar fail-open answers",
    "Sidecar decision cache",
}
LATENCY_PANELS = {
    "Event time to decision",
    "Batch processing time",
    "Batch time by stage",
    "Redis round-trip latency",
    "Sidecar check latency",
}

POLICY = """
name: observability
version: "1"
windows: [10s, 1m, 10m]
burst: {short: 10s, baseline: 10m, floor_rps: 0.5}
rules:
  - name: key-burst
    subject: api_key
    when: ["rps[10s] > 4", "burst > 4"]
    action: throttle
    limit_rps: 1
    for: 5m
  - name: network-watch
    subject: network
    shadow: true
    when: ["rps[10s] > 4"]
    action: block
    for: 5m
"""


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in orjson.loads(DASHBOARD.read_text())["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows nest their panels
    return [p for p in panels if p.get("targets")]


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    unknown = re.findall(r"\$\{?\w+", expr)
    assert not unknown, f"dashboard uses Grafana variables the test does not know: {unknown}"
    return expr


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_promtool_accepts_the_scrape_config_and_the_alert_rules() -> None:
    for args in (("check", "config", PROMETHEUS_CONFIG), ("check", "rules", ALERT_RULES)):
        done = promtool(*args)
        command = " ".join(map(str, args))
        assert done.returncode == 0, f"promtool {command}:\n{done.stdout}{done.stderr}"
    assert {r["alert"] for r in alert_rules()} == {
        "EnforcerWorkerDown",
        "EnforcerConsumerLagGrowing",
        "EnforcerNoEventsArriving",
        "EnforcerRedisErrors",
        "EnforcerDecisionSpike",
        "EnforcerPolicyReloadFailing",
        "EnforcerPartitionStalled",
        "EnforcerDeadLettersLost",
        "EnforcerSidecarDown",
        "EnforcerSidecarFailingOpen",
        "EnforcerSidecarErrors",
        "EnforcerSidecarRefusingRequests",
        "EnforcerUnverifiedDecisions",
    }
    for rule in alert_rules():
        notes = rule.get("annotations", {})
        assert {"summary", "description", "runbook"} <= set(notes), rule["alert"]


W = 'job="enforcer", instance="w1:6066"'
S = 'job="enforcer-sidecar", instance="s1:6070"'
# alert -> scenarios of (input series, evaluation time, labels of the expected alerts).
SCENARIOS: list[tuple[str, list[tuple[str, str]], str, list[dict[str, str]]]] = [
    (
        "EnforcerWorkerDown",
        [(f"up{{{W}}}", "1 0x9")],
        "5m",
        [{"job": "enforcer", "instance": "w1:6066"}],
    ),
    (
        "EnforcerWorkerDown",
        [('up{job="other", instance="x:1"}', "1x9")],
        "5m",
        [{"job": "enforcer"}],
    ),  # no enforcer target configured at all
    ("EnforcerWorkerDown", [(f"up{{{W}}}", "1x9")], "5m", []),
    (
        "EnforcerConsumerLagGrowing",
        [(f'enforcer_consumer_lag{{{W}, topic="gateway.events", partition="0"}}', "0+500x30")],
        "15m",
        [{"topic": "gateway.events"}],
    ),
    (
        "EnforcerConsumerLagGrowing",  # a large but steady backlog is draining as fast as it fills
        [(f'enforcer_consumer_lag{{{W}, topic="gateway.events", partition="0"}}', "5000x30")],
        "15m",
        [],
    ),
    (
        "EnforcerPartitionStalled",
        [(f'enforcer_partition_stalled{{{W}, topic="gateway.events", partition="3"}}', "0 0 1x5")],
        "5m",
        [{"instance": "w1:6066", "topic": "gateway.events", "partition": "3"}],
    ),
    (
        "EnforcerPartitionStalled",  # a stall that cleared before a minute was out
        [(f'enforcer_partition_stalled{{{W}, topic="gateway.events", partition="3"}}', "0 1 0x5")],
        "5m",
        [],
    ),
    (
        "EnforcerDeadLettersLost",
        [(f"enforcer_deadletter_failures_total{{{W}}}", "0 0 1x10")],
        "5m",
        [{"instance": "w1:6066"}],
    ),
    (
        "EnforcerDeadLettersLost",
        [(f"enforcer_deadletter_failures_total{{{W}}}", "0x10")],
        "5m",
        [],
    ),
    (
        "EnforcerNoEventsArriving",
        [(f"enforcer_events_consumed_total{{{W}}}", "0+100x5 500x30")],
        "25m",
        [{}],
    ),
    (
        "EnforcerNoEventsArriving",
        [(f"enforcer_events_consumed_total{{{W}}}", "0+100x30")],
        "25m",
        [],
    ),
    (
        "EnforcerRedisErrors",
        [
            (
                f'enforcer_redis_errors_total{{{W}, script="update_windows", error="unavailable"}}',
                "0+5x20",
            )
        ],
        "10m",
        [{"script": "update_windows", "error": "unavailable"}],
    ),
    (
        "EnforcerDecisionSpike",
        [
            (
                f'enforcer_decisions_total{{{W}, action="throttle", rule="key-burst", mode="enforce", '
                'subject_kind="api_key"}',
                "0+1x420 420+200x20",
            )
        ],
        "435m",
        [{}],
    ),
    (
        "EnforcerDecisionSpike",  # shadow rules may fire as much as they like
        [
            (
                f'enforcer_decisions_total{{{W}, action="throttle", rule="key-burst", mode="shadow", '
                'subject_kind="api_key"}',
                "0+1x420 420+200x20",
            )
        ],
        "435m",
        [],
    ),
    (
        "EnforcerPolicyReloadFailing",  # the bad file stays on disk: the alert stays on
        [(f"enforcer_policy_last_reload_successful{{{W}}}", "1 1 0x60")],
        "60m",
        [{"instance": "w1:6066"}],
    ),
    (
        "EnforcerPolicyReloadFailing",  # fixed: a good reload followed the bad one
        [(f"enforcer_policy_last_reload_successful{{{W}}}", "1 0 0 1x60")],
        "60m",
        [],
    ),
    (
        "EnforcerSidecarDown",
        [(f"up{{{S}}}", "1 0x9")],
        "5m",
        [{"job": "enforcer-sidecar", "instance": "s1:6070"}],
    ),
    ("EnforcerSidecarDown", [(f"up{{{S}}}", "1x9")], "5m", []),
    (
        "EnforcerSidecarFailingOpen",
        [(f'enforcer_sidecar_failed_open_total{{{S}, dependency="redis"}}', "0+10x20")],
        "10m",
        [{"instance": "s1:6070", "dependency": "redis"}],
    ),
    (
        "EnforcerSidecarFailingOpen",  # exported from zero, never used
        [(f'enforcer_sidecar_failed_open_total{{{S}, dependency="redis"}}', "0x20")],
        "10m",
        [],
    ),
    (
        "EnforcerSidecarErrors",
        [(f'enforcer_sidecar_answers_total{{{S}, action="error", status="500"}}', "0+5x20")],
        "10m",
        [{"instance": "s1:6070", "action": "error", "status": "500"}],
    ),
    (
        "EnforcerSidecarErrors",  # the client's 400s are not the sidecar's errors
        [(f'enforcer_sidecar_answers_total{{{S}, action="invalid", status="400"}}', "0+5x20")],
        "10m",
        [],
    ),
    (
        "EnforcerUnverifiedDecisions",
        [(f'enforcer_sidecar_unverified_decisions_total{{{S}, reason="forged"}}', "0 0 0 6x10")],
        "5m",
        [{"instance": "s1:6070", "reason": "forged"}],
    ),
    (
        "EnforcerUnverifiedDecisions",  # exported at zero by every sidecar, signing on or off
        [(f'enforcer_sidecar_unverified_decisions_total{{{S}, reason="unsigned"}}', "0x20")],
        "10m",
        [],
    ),
    (
        "EnforcerSidecarRefusingRequests",
        [
            (f'enforcer_sidecar_answers_total{{{S}, action="invalid", status="400"}}', "0+60x30"),
            (f'enforcer_sidecar_answers_total{{{S}, action="allow", status="200"}}', "0+600x30"),
        ],
        "25m",
        [{"instance": "s1:6070"}],
    ),
    (
        "EnforcerSidecarRefusingRequests",  # one in a hundred: clients' bad keys, not a setup fault
        [
            (f'enforcer_sidecar_answers_total{{{S}, action="invalid", status="400"}}', "0+6x30"),
            (f'enforcer_sidecar_answers_total{{{S}, action="allow", status="200"}}', "0+600x30"),
        ],
        "25m",
        [],
    ),
]


def test_each_alert_fires_on_its_scenario_and_not_on_its_look_alike(tmp_path: Path) -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert {s[0] for s in SCENARIOS} == set(rules), "every alert needs a scenario"
    tests = []
    for alert, series, eval_time, expected in SCENARIOS:
        rule = rules[alert]
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    {
                        "eval_time": eval_time,
                        "alertname": alert,
                        "exp_alerts": [
                            {
                                "exp_labels": {**rule["labels"], **labels},
                                "exp_annotations": rule["annotations"],
                            }
                            for labels in expected
                        ],
                    }
                ],
            }
        )
    unit = tmp_path / "alerts_test.yml"
    unit.write_text(
        yaml.safe_dump(
            {"rule_files": [str(ALERT_RULES)], "evaluation_interval": "1m", "tests": tests}
        )
    )
    done = promtool("test", "rules", unit)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"


def check(sidecar: SidecarProcess, key: str, ip: str | None = "192.0.2.1") -> tuple[int, str]:
    """One check against the sidecar: its status and X-Enforcer-Action."""
    headers = {"X-Enforcer-Key": key, **({"X-Enforcer-Ip": ip} if ip else {})}
    request = urllib.request.Request(sidecar.url("/v1/check"), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers["X-Enforcer-Action"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["X-Enforcer-Action"]


async def test_real_prometheus_scrapes_a_worker_and_every_dashboard_and_alert_query_works(
    kafka_settings: Settings,
    worker_factory,
    prometheus_factory,
    sidecar_process: SidecarProcess,
    producer: AIOKafkaProducer,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    worker = worker_factory(kafka_settings.with_(policy_file=str(policy), batch_within_s=0.05))
    prom: PrometheusProcess = prometheus_factory(
        f"127.0.0.1:{worker.settings.web_port}", f"127.0.0.1:{sidecar_process.sidecar.port}"
    )
    # Scraped once before the traffic, so every rate sees its counters rise from zero.
    prom.wait_for('up{job="enforcer"}', lambda v: v == 1, timeout_s=30)
    prom.wait_for("enforcer_events_consumed_total", lambda v: v == 0, timeout_s=30)
    prom.wait_for('up{job="enforcer-sidecar"}', lambda v: v == 1, timeout_s=30)

    secret = f"PROMPT-{uuid.uuid4().hex}"
    prompt = f"please explain {secret} step by step and show all your reasoning"
    now = time.time()
    benign = [
        event(f"k-user-{i}", now - 60 + 12 * j + i * 0.1, ip=f"10.{i}.0.7", prompt=prompt)
        for i in range(30)
        for j in range(5)
    ]
    attacker = [
        event("k-attacker", now - 10 + i * 0.066, ip="203.0.113.9", prompt=prompt)
        for i in range(150)
    ]
    topic = kafka_settings.events_topic
    for doc in benign + attacker:
        await producer.send(topic, key=doc["api_key"].encode(), value=orjson.dumps(doc))
    await producer.send(topic, key=b"broken", value=b'{"event_id": "x", "ts": ')
    await producer.flush()

    consumed = prom.wait_for("sum(enforcer_events_consumed_total)", lambda v: v >= 301)
    prom.wait_for("sum(enforcer_active_subjects)", lambda v: v >= 2)  # refreshed every 5 s
    prom.wait_for("count(enforcer_consumer_lag)", lambda v: v == 8)  # the events topic's partitions
    prom.wait_for("sum(enforcer_consumer_lag)", lambda v: v == 0)  # all read: nothing waits
    assert consumed == 301
    assert prom.value('sum(enforcer_events_processed_total{result="counted"})') == 300
    assert prom.value('sum(enforcer_events_rejected_total{reason="malformed_json"})') == 1
    assert (
        prom.value(
            'sum(enforcer_decisions_total{rule="key-burst", action="throttle", mode="enforce", '
            'subject_kind="api_key"})'
        )
        == 1
    )
    assert prom.value('sum(enforcer_decisions_total{rule="network-watch", mode="shadow"})') == 1
    assert prom.value('sum(enforcer_active_subjects{action="throttle", mode="enforce"})') == 1
    assert prom.value('sum(enforcer_active_subjects{action="block", mode="shadow"})') == 1

    # The sidecar reads the worker's throttle off the decisions topic; checks against it, an
    # allowed key and a malformed request give its panels traffic of each kind.
    deadline = time.monotonic() + 10
    while check(sidecar_process, "k-attacker")[1] != "throttle":
        assert time.monotonic() < deadline, "the sidecar never saw the worker's throttle"
        time.sleep(0.1)
    for _ in range(3):
        assert check(sidecar_process, "k-attacker")[1] == "throttle"
        assert check(sidecar_process, "k-user-1") == (200, "allow")
    assert check(sidecar_process, "k-user-1", ip=None) == (400, "invalid")
    prom.wait_for(
        'sum(enforcer_sidecar_answers_total{action="invalid"})', lambda v: v == 1, timeout_s=30
    )
    assert prom.value('sum(enforcer_sidecar_answers_total{action="allow"})') >= 3
    assert prom.value('sum(enforcer_sidecar_check_seconds_count{source="redis"})') >= 4
    assert prom.value("sum(enforcer_sidecar_decisions)") == 1

    # Every dashboard query is valid PromQL on this Prometheus; the traffic panels show data.
    empty = []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            result = prom.query(substitute(target["expr"]))
            if panel["title"] in PANELS_WITH_DATA and not result:
                empty.append(f"{panel['title']}: {target['expr']}")
            if panel["title"] in LATENCY_PANELS:
                assert finite(result), f"{panel['title']}: {target['expr']} -> {result}"
    assert not empty, "panels without data:\n" + "\n".join(empty)
    # The simulated events are up to 60 s old when sent: latency counts from event time.
    p99 = prom.value(
        substitute(
            "histogram_quantile(0.99, sum by (le) "
            "(rate(enforcer_event_to_decision_seconds_bucket[$__rate_interval])))"
        )
    )
    assert p99 is not None and 0 < p99 < 90
    variable = orjson.loads(DASHBOARD.read_text())["templating"]["list"][0]
    selector = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
    assert selector, variable["definition"]
    assert {r["metric"][selector.group(2)] for r in prom.query(selector.group(1))} == {
        f"127.0.0.1:{worker.settings.web_port}"
    }

    # Every alert expression is valid and quiet on a healthy worker, and Prometheus loaded
    # and evaluated the rule file itself without errors.
    for rule in alert_rules():
        assert prom.query(rule["expr"]) == [], f"{rule['alert']} would fire on a healthy worker"
    deadline = time.monotonic() + 15
    while True:
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        if len(rules) == len(alert_rules()) and all(r["health"] != "unknown" for r in rules):
            break
        assert time.monotonic() < deadline, f"rules not evaluated: {rules}"
        time.sleep(0.5)
    assert {r["name"]: (r["health"], r.get("lastError", "")) for r in rules} == {
        r["alert"]: ("ok", "") for r in alert_rules()
    }

    # The scrape itself: bounded, cheap, and no label carries a key, an IP or a network.
    url = f"http://127.0.0.1:{worker.settings.web_port}/metrics"
    started = time.perf_counter()
    for _ in range(20):
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read().decode()
            content_type = resp.headers["Content-Type"]
    per_scrape_ms = (time.perf_counter() - started) / 20 * 1000
    series = [line for line in body.splitlines() if line.startswith("enforcer_")]
    print(f"/metrics: {len(body)} bytes, {len(series)} enforcer_ series, {per_scrape_ms:.1f} ms")
    assert content_type.startswith("text/plain; version=0.0.4")
    assert len(series) < 400
    for leaked in ("k-attacker", "k-user-", "203.0.113", "10.1.0"):
        assert leaked not in body

    # One JSON log line per decision, with its reasons; no prompt text anywhere in the log.
    log = worker.log()
    assert secret not in log
    # One JSON stream: Faust's and aiokafka's lines too, so every line parses.
    lines = [orjson.loads(line) for line in log.splitlines() if line.strip()]
    decisions = [line["decision"] for line in lines if line.get("message") == "decision"]
    assert {(d["rule"], d["mode"]) for d in decisions} == {
        ("key-burst", "enforce"),
        ("network-watch", "shadow"),
    }
    assert all(d["reasons"] for d in decisions)
    assert all(line["logger"] == "enforcer.worker" for line in lines if "decision" in line)
