"""The sidecar's /metrics: answers by action and status, fail-open answers, the decision cache's
size and lag, and check latency, in a registry of its own."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from enforcer.core.settings import Settings
from tests.conftest import free_port
from tests.gateway.conftest import Publish, SidecarFactory, check_url, make_decision


async def scrape(
    http: aiohttp.ClientSession, port: int | None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_count_answers_by_action_and_status_and_time_every_check(
    sidecar_factory: SidecarFactory, publish: Publish, http: aiohttp.ClientSession
) -> None:
    await publish(
        make_decision("api_key", "k-block", "block"),
        make_decision("api_key", "k-throttle", "throttle", limit_rps=1),
        make_decision("network", "198.51.100.0/24", "degrade"),
    )
    sidecar = await sidecar_factory()
    other = await sidecar_factory()  # same process, its own registry and counts
    url = check_url(sidecar)
    for key, ip in [
        ("k-block", "192.0.2.1"),
        ("k-block", "192.0.2.1"),
        ("k-throttle", "192.0.2.1"),
        ("k-throttle", "192.0.2.1"),
        ("k-other", "198.51.100.7"),
        ("k-other", "192.0.2.1"),
        ("k-other", "not-an-ip"),
    ]:
        async with http.get(url, headers={"X-Enforcer-Key": key, "X-Enforcer-Ip": ip}):
            pass
    samples = await scrape(http, sidecar.port)
    answers = {
        (dict(labels)["action"], dict(labels)["status"]): count
        for (name, labels), count in samples.items()
        if name == "enforcer_sidecar_answers_total" and count
    }
    assert answers == {
        ("block", "403"): 2,
        ("throttle", "200"): 1,
        ("throttle", "429"): 1,
        ("degrade", "200"): 1,
        ("allow", "200"): 1,
        ("invalid", "400"): 1,
    }
    # Every pair is exported from zero, so rates over a fresh sidecar start at once.
    assert value(samples, "enforcer_sidecar_answers_total", action="error", status="500") == 0
    assert value(samples, "enforcer_sidecar_check_seconds_count", source="memory") == 5
    assert value(samples, "enforcer_sidecar_check_seconds_count", source="redis") == 2
    assert 0 < value(samples, "enforcer_sidecar_check_seconds_sum", source="memory") < 1
    assert value(samples, "enforcer_sidecar_decisions") == 3
    assert value(samples, "enforcer_sidecar_decision_lag") == 0
    assert value(samples, "enforcer_sidecar_kafka_connected") == 1
    assert value(samples, "enforcer_sidecar_caught_up") == 1
    assert value(samples, "enforcer_sidecar_failed_open_total", dependency="redis") == 0
    # Not the worker's registry: none of its metrics, and no per-request label values.
    names = {name for name, _ in samples}
    assert all(name.startswith("enforcer_sidecar_") for name in names), names
    assert not any("k-block" in str(labels) or "192.0.2" in str(labels) for _, labels in samples)

    other_samples = await scrape(http, other.port)
    assert value(other_samples, "enforcer_sidecar_answers_total", action="block", status="403") == 0


async def test_metrics_count_fail_open_answers_by_dependency(
    sidecar_factory: SidecarFactory,
    kafka_settings: Settings,
    http: aiohttp.ClientSession,
) -> None:
    nowhere = kafka_settings.with_(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    sidecar = await sidecar_factory(nowhere, wait_ready=False, failure="open")
    for _ in range(3):
        async with http.get(check_url(sidecar), headers={"X-Enforcer-Ip": "192.0.2.1"}) as resp:
            assert resp.status == 200
    samples = await scrape(http, sidecar.port)
    assert value(samples, "enforcer_sidecar_failed_open_total", dependency="kafka") == 3
    assert value(samples, "enforcer_sidecar_caught_up") == 0
    assert value(samples, "enforcer_sidecar_kafka_connected") == 0
