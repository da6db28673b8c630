"""Lifting decisions on the real stack: `enforcer decisions lift` and allow-list reloads reach
the sidecar, and `decisions list|show` read what the gateways act on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from enforcer.cli import main
from enforcer.core.settings import Settings
from enforcer.gateway.sidecar import ACTION_HEADER, Sidecar
from tests.conftest import DEFAULT_POLICY, WorkerProcess, read_topic
from tests.gateway.conftest import Publish, SidecarFactory, check_url, make_decision


async def action_of(http: aiohttp.ClientSession, sidecar: Sidecar, key: str) -> str | None:
    headers = {"X-Enforcer-Key": key, "X-Enforcer-Ip": "192.0.2.10"}
    async with http.get(check_url(sidecar), headers=headers) as resp:
        return resp.headers.get(ACTION_HEADER)


async def until_allowed(
    http: aiohttp.ClientSession, sidecar: Sidecar, key: str, timeout_s: float
) -> float:
    """Seconds until the sidecar allows `key`; fails after `timeout_s`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await action_of(http, sidecar, key) == "allow":
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    pytest.fail(f"{key} still not allowed after {timeout_s}s")


async def cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *argv: str
) -> tuple[int, str]:
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    assert not captured.err or code != 0, captured.err
    return code, captured.out + captured.err


async def test_a_lift_reaches_the_sidecar_within_a_second_and_is_on_record(
    kafka_settings: Settings,
    publish: Publish,
    sidecar_factory: SidecarFactory,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    await publish(
        make_decision("api_key", "k-fp", "block"), make_decision("api_key", "k-bad", "block")
    )
    sidecar = await sidecar_factory()
    assert await action_of(http, sidecar, "k-fp") == "block"

    code, out = await cli(
        kafka_settings, monkeypatch, capsys,
        "decisions", "lift", "api_key:k-fp", "--reason", "tutoring app", "--by", "alice",
        "--for", "30m", "--json",
    )  # fmt: skip
    assert code == 0
    lifted = orjson.loads(out)["lifted"]
    assert (lifted["action"], lifted["lift"]) == (
        "allow",
        {"by": "alice", "reason": "tutoring app"},
    )
    assert lifted["expires_at"] == pytest.approx(lifted["issued_at"] + 1800)
    # From the broker's acknowledgement of the lift to the sidecar answering allow.
    assert await until_allowed(http, sidecar, "k-fp", timeout_s=5) < 1.0
    assert await action_of(http, sidecar, "k-bad") == "block"

    code, out = await cli(
        kafka_settings, monkeypatch, capsys, "decisions", "show", "api_key:k-fp", "--json"
    )
    assert out.startswith("{"), out
    shown = orjson.loads(out)
    assert code == 0 and shown["in_force"] is None
    assert [(d["action"], d["lift"]) for d in shown["history"]] == [
        ("block", None),
        ("allow", {"by": "alice", "reason": "tutoring app"}),
    ]
    code, out = await cli(
        kafka_settings, monkeypatch, capsys, "decisions", "list", "--action", "block", "--json"
    )
    assert [d["subject"]["value"] for d in orjson.loads(out)["decisions"]] == ["k-bad"]
    code, out = await cli(kafka_settings, monkeypatch, capsys, "decisions", "show", "ip:192.0.2.1")
    assert code == 1 and "no decision" in out


async def test_an_allow_list_reload_lifts_a_live_block(
    kafka_settings: Settings,
    publish: Publish,
    sidecar_factory: SidecarFactory,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    worker_factory,  # type: ignore[no-untyped-def]
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(DEFAULT_POLICY.read_text())
    settings = kafka_settings.with_(policy_file=str(policy_file))
    await publish(
        make_decision("api_key", "k-partner", "block", expires_in=3600),
        make_decision("network", "203.0.113.0/24", "block", expires_in=3600),
        make_decision("api_key", "k-attacker", "block", expires_in=3600),
    )
    worker: WorkerProcess = await asyncio.to_thread(worker_factory, settings)
    sidecar = await sidecar_factory()
    assert await action_of(http, sidecar, "k-partner") == "block"

    text = policy_file.read_text()
    assert "  api_keys: []\n" in text and "  networks: []\n" in text
    policy_file.write_text(
        text.replace("  api_keys: []\n", "  api_keys: [k-partner]\n").replace(
            "  networks: []\n", "  networks: [203.0.113.0/22]\n"
        )
    )
    waited = await until_allowed(http, sidecar, "k-partner", timeout_s=20)
    assert await action_of(http, sidecar, "k-attacker") == "block", worker.tail()

    lifts = await read_topic(
        settings,
        settings.decisions_topic,
        lambda ms: sum(1 for m in ms if b'"lift":{' in m.value) >= 2,
    )
    lifted = {
        doc["subject"]["value"]: doc["lift"]["by"]
        for doc in (orjson.loads(m.value) for m in lifts)
        if doc.get("lift")
    }
    assert lifted == {"k-partner": "policy reload", "203.0.113.0/24": "policy reload"}
    print(f"allow-list edit to sidecar allow: {waited:.1f}s")
