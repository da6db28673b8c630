"""The check sidecar over HTTP: answers per action, header validation, failure modes, settings."""

from __future__ import annotations

import logging

import aiohttp
import orjson
import pytest

from enforcer.core.settings import Settings, SettingsError
from enforcer.gateway.settings import SidecarSettings
from enforcer.gateway.sidecar import ACTION_HEADER, WITHHOLD_HEADER
from tests.conftest import ROOT, free_port
from tests.gateway.conftest import Publish, SidecarFactory, check_url, make_decision


def headers(key: str | None = "k-other", ip: str = "192.0.2.10", **extra: str) -> dict[str, str]:
    h = {"X-Enforcer-Ip": ip, **extra}
    if key is not None:
        h["X-Enforcer-Key"] = key
    return h


async def test_each_action_gets_its_answer(
    sidecar_factory: SidecarFactory, publish: Publish, http: aiohttp.ClientSession
) -> None:
    await publish(
        make_decision("api_key", "k-block", "block"),
        make_decision("api_key", "k-degrade", "degrade"),
        make_decision("account", "acct-degrade", "degrade"),
        make_decision("network", "2001:db8:1::/48", "block"),
        make_decision("asn", "64500", "block"),
        make_decision("api_key", "k-shadow", "block", mode="shadow"),
    )
    sidecar = await sidecar_factory()
    url = check_url(sidecar)

    async def ask(h: dict[str, str]) -> tuple[int, str | None, str | None]:
        async with http.get(url, headers=h) as resp:
            return resp.status, resp.headers.get(ACTION_HEADER), resp.headers.get(WITHHOLD_HEADER)

    assert await ask(headers("k-block")) == (403, "block", None)
    assert await ask(headers("k-degrade")) == (200, "degrade", "1")
    by_account = headers("k-x", **{"X-Enforcer-Account": "acct-degrade"})
    assert await ask(by_account) == (200, "degrade", "1")
    assert await ask(headers("k-x", ip="2001:db8:1:2::3")) == (403, "block", None)
    assert await ask(headers("k-x", **{"X-Enforcer-Asn": "AS64500"})) == (403, "block", None)
    assert await ask(headers("k-shadow")) == (200, "allow", None)
    assert await ask(headers("k-other")) == (200, "allow", None)
    assert await ask(headers(None)) == (200, "allow", None)  # no key: IP, network, ASN still apply
    async with http.get(f"http://127.0.0.1:{sidecar.port}/v1/stats") as resp:
        stats = await resp.json()
    assert stats["cache"]["size"] == 5 and stats["cache"]["lag"] == 0
    assert stats["responses"] == {"block": 3, "degrade": 2, "allow": 3}


@pytest.mark.parametrize(
    ("case", "request_headers"),
    [
        ("missing client IP", {"X-Enforcer-Key": "k"}),
        ("IP that is not an address", headers(ip="203.0.113.5, 10.0.0.1")),
        ("key longer than 256 characters", headers("k" * 257)),
        ("account longer than 256 characters", headers(**{"X-Enforcer-Account": "a" * 257})),
        ("ASN that is not a number", headers(**{"X-Enforcer-Asn": "64500x"})),
        ("ASN beyond 32 bits", headers(**{"X-Enforcer-Asn": "4294967296"})),
        ("ASN in digits int() refuses", headers(**{"X-Enforcer-Asn": "AS²"})),
        ("ASN in another script's digits", headers(**{"X-Enforcer-Asn": "AS٦٤٥٠٠"})),
        ("IPv6 address with a zone id", headers(ip="2001:db8::5%0")),
        ("header longer than the limit", headers(**{"Cookie": "c" * 5000})),
        ("key longer than the header limit", headers("k" * 5000)),
    ],
)
async def test_malformed_or_oversize_headers_are_answered_400_with_action_invalid(
    sidecar_factory: SidecarFactory,
    http: aiohttp.ClientSession,
    case: str,
    request_headers: dict[str, str],
) -> None:
    sidecar = await sidecar_factory()
    async with http.get(check_url(sidecar), headers=request_headers) as resp:
        assert (resp.status, resp.headers.get(ACTION_HEADER)) == (400, "invalid"), case
        body = await resp.read()
    for value in request_headers.values():
        assert value.encode()[:40] not in body, f"{case}: the answer quotes the request"


async def test_zone_id_cannot_walk_around_an_ip_block(
    sidecar_factory: SidecarFactory, publish: Publish, http: aiohttp.ClientSession
) -> None:
    await publish(
        make_decision("ip", "2001:db8::5", "block"), make_decision("ip", "192.0.2.99", "block")
    )
    sidecar = await sidecar_factory()

    async def status(ip: str) -> int:
        async with http.get(check_url(sidecar), headers=headers(ip=ip)) as resp:
            return resp.status

    assert await status("2001:db8::5") == 403
    assert await status("2001:DB8:0::5") == 403
    assert await status("::ffff:192.0.2.99") == 403  # IPv4-mapped IPv6 is the IPv4 address
    assert await status("2001:db8::5%0") == 400
    assert await status("2001:db8::5%25eth0") == 400


async def test_block_and_throttle_answers_name_the_decision_and_carry_ratelimit_fields(
    sidecar_factory: SidecarFactory, publish: Publish, http: aiohttp.ClientSession
) -> None:
    block = make_decision("api_key", "k-block", "block")
    throttle = make_decision("api_key", "k-throttle", "throttle", limit_rps=1)
    wide = make_decision("api_key", "k-wide", "throttle", limit_rps=4)
    forever = make_decision("api_key", "k-forever", "block", expires_in=None)
    await publish(block, throttle, wide, forever)
    sidecar = await sidecar_factory()
    url = check_url(sidecar)

    async def ask(key: str, query: str = "") -> tuple[int, dict[str, str], bytes]:
        async with http.get(url + query, headers=headers(key)) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    status, h, body = await ask("k-block")
    assert (status, h["Content-Type"]) == (403, "application/json")
    assert orjson.loads(body) == {
        "action": "block",
        "rule": "test-block",
        "decision_id": block.decision_id,
        "expires_at": block.expires_at,
    }
    assert orjson.loads((await ask("k-forever"))[2])["expires_at"] is None

    # Under its rate a throttled key is let through, and told so, with what remains.
    status, h, body = await ask("k-throttle")
    assert (status, h[ACTION_HEADER], body) == (200, "throttle", b"")
    assert h["RateLimit-Policy"] == '"throttle";q=1;w=1'
    assert h["RateLimit"] == '"throttle";r=0;t=1'
    status, h, body = await ask("k-throttle")
    assert (status, h[ACTION_HEADER], h["Retry-After"]) == (429, "throttle", "1")
    assert (h["RateLimit-Policy"], h["RateLimit"]) == ('"throttle";q=1;w=1', '"throttle";r=0;t=1')
    assert orjson.loads(body) == {
        "action": "throttle",
        "rule": "test-throttle",
        "decision_id": throttle.decision_id,
        "expires_at": throttle.expires_at,
        "retry_after_s": 1,
    }
    status, h, body = await ask("k-throttle", "?throttle_status=403")
    assert (status, h[ACTION_HEADER]) == (403, "throttle")
    assert orjson.loads(body)["decision_id"] == throttle.decision_id

    remaining = []
    for _ in range(5):
        status, h, _ = await ask("k-wide")
        remaining.append((status, h["RateLimit"]))
    assert remaining == [(200, f'"throttle";r={r};t=1') for r in (3, 2, 1, 0)] + [
        (429, '"throttle";r=0;t=1')
    ]
    assert h["RateLimit-Policy"] == '"throttle";q=4;w=1'


async def test_sidecar_binds_to_loopback_by_default(sidecar_factory: SidecarFactory) -> None:
    assert SidecarSettings().host == "127.0.0.1"
    sidecar = await sidecar_factory()
    assert sidecar._runner is not None
    assert [address[0] for address in sidecar._runner.addresses] == ["127.0.0.1"]


def test_readme_lists_every_sidecar_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Gateway integration", 1)[-1]
    assert SidecarSettings.markdown_table() in section, (
        "README's sidecar settings table is stale: paste SidecarSettings.markdown_table()"
    )


def test_sidecar_settings_are_checked_and_the_worker_accepts_them() -> None:
    env = {"ENFORCER_SIDECAR_PORT": "7001", "ENFORCER_SIDECAR_FAILURE": "closed"}
    assert SidecarSettings.from_env(env).port == 7001
    Settings.from_env(env)  # the worker's settings leave ENFORCER_SIDECAR_* to the sidecar
    with pytest.raises(SettingsError, match="ENFORCER_SIDECAR_PROT"):
        SidecarSettings.from_env({"ENFORCER_SIDECAR_PROT": "7001"})
    with pytest.raises(SettingsError, match="ENFORCER_SIDECAR_FAILURE"):
        SidecarSettings.from_env({"ENFORCER_SIDECAR_FAILURE": "maybe"})


@pytest.mark.parametrize(("failure", "expected"), [("open", 200), ("closed", 503)])
async def test_without_kafka_the_failure_setting_decides(
    sidecar_factory: SidecarFactory,
    kafka_settings: Settings,
    http: aiohttp.ClientSession,
    failure: str,
    expected: int,
) -> None:
    nowhere = kafka_settings.with_(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    sidecar = await sidecar_factory(nowhere, wait_ready=False, failure=failure)
    async with http.get(check_url(sidecar), headers=headers("k-any")) as resp:
        assert resp.status == expected
    async with http.get(f"http://127.0.0.1:{sidecar.port}/readyz") as resp:
        assert resp.status == 503 and (await resp.json())["kafka"] is False


@pytest.mark.parametrize(("failure", "expected"), [("open", 200), ("closed", 503)])
async def test_without_redis_a_throttled_key_gets_the_failure_setting(
    sidecar_factory: SidecarFactory,
    kafka_settings: Settings,
    publish: Publish,
    http: aiohttp.ClientSession,
    failure: str,
    expected: int,
) -> None:
    await publish(
        make_decision("api_key", "k-throttle", "throttle", limit_rps=1),
        make_decision("api_key", "k-block", "block"),
    )
    no_redis = kafka_settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    sidecar = await sidecar_factory(no_redis, failure=failure)
    for _ in range(3):
        async with http.get(check_url(sidecar), headers=headers("k-throttle")) as resp:
            assert resp.status == expected
    # Blocks and allows need no Redis: they are answered from memory either way.
    async with http.get(check_url(sidecar), headers=headers("k-block")) as resp:
        assert resp.status == 403
    async with http.get(check_url(sidecar), headers=headers("k-other")) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("failure", "expected_status", "expected_state"),
    [("open", 200, "degraded"), ("closed", 503, "unavailable")],
)
async def test_readyz_without_redis_follows_the_failure_setting(
    sidecar_factory: SidecarFactory,
    kafka_settings: Settings,
    http: aiohttp.ClientSession,
    failure: str,
    expected_status: int,
    expected_state: str,
) -> None:
    no_redis = kafka_settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    sidecar = await sidecar_factory(no_redis, failure=failure)
    async with http.get(f"http://127.0.0.1:{sidecar.port}/readyz") as resp:
        doc = await resp.json()
        assert resp.status == expected_status, doc
    assert doc == {
        "ready": failure == "open",
        "status": expected_state,
        "kafka": True,
        "caught_up": True,
        "redis": False,
        "failure": failure,
    }


async def test_failing_open_is_counted_per_answer_and_logged_once_per_interval(
    sidecar_factory: SidecarFactory,
    kafka_settings: Settings,
    publish: Publish,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await publish(make_decision("api_key", "k-throttle", "throttle", limit_rps=1))
    no_redis = kafka_settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    sidecar = await sidecar_factory(no_redis, failure="open", log_every_s=60)
    caplog.set_level(logging.WARNING, logger="enforcer.gateway.sidecar")
    for _ in range(5):
        async with http.get(check_url(sidecar), headers=headers("k-throttle")) as resp:
            # Let through uncounted: the decision is still named, but no RateLimit is known.
            assert (resp.status, resp.headers[ACTION_HEADER]) == (200, "throttle")
            assert "RateLimit" not in resp.headers
    assert sidecar.metrics.failed_open == {"kafka": 0, "redis": 5}
    lines = [r.getMessage() for r in caplog.records if r.name == "enforcer.gateway.sidecar"]
    assert len(lines) == 1 and lines[0].startswith("failing open: throttle check failed"), lines


async def test_envoy_style_check_with_original_method_and_path_is_answered(
    sidecar_factory: SidecarFactory, publish: Publish, http: aiohttp.ClientSession
) -> None:
    await publish(make_decision("api_key", "k-block", "block"))
    sidecar = await sidecar_factory()
    # Envoy's HTTP ext_authz asks with the client's method and path appended to the prefix.
    envoy_url = f"{check_url(sidecar)}/v1/messages?throttle_status=bogus"
    async with http.post(envoy_url, headers=headers("k-block")) as resp:
        assert (resp.status, resp.headers[ACTION_HEADER]) == (403, "block")
    async with http.post(envoy_url, headers=headers("k-other")) as resp:
        assert (resp.status, resp.headers[ACTION_HEADER]) == (200, "allow")
