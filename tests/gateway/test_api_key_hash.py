"""A keyed hash of API keys end to end: the publisher keys events by it, the worker's windows,
decisions, Kafka keys and logs carry it instead of the key, and a sidecar with the same secret
enforces the decision on the raw key a gateway sends."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import aiohttp
import orjson

from enforcer.core.keyhash import api_key_hasher
from enforcer.core.settings import Settings
from enforcer.gateway.publisher import EventPublisher
from enforcer.gateway.sidecar import ACTION_HEADER
from tests.conftest import event, read_topic
from tests.gateway.conftest import SidecarFactory, check_url

SECRET = "h" * 40
RAW_KEY = "sk-live-raw-key-0001"
POLICY = """
name: hashed
version: "1"
windows: [10s, 1m, 10m]
burst: {short: 10s, baseline: 10m, floor_rps: 0.5}
rules:
  - name: key-burst
    subject: api_key
    when: ["rps[10s] > 4", "burst > 4"]
    action: block
    for: 5m
"""


def test_the_hash_is_the_documented_hmac() -> None:
    expected = hmac.new(SECRET.encode(), RAW_KEY.encode(), hashlib.sha256).hexdigest()[:32]
    assert api_key_hasher(SECRET)(RAW_KEY) == "h1." + expected
    assert api_key_hasher("x" * 40)(RAW_KEY) != api_key_hasher(SECRET)(RAW_KEY)


async def test_hashed_keys_are_what_kafka_and_logs_carry_and_the_sidecar_still_enforces(
    kafka_settings: Settings,
    worker_factory,  # type: ignore[no-untyped-def]
    sidecar_factory: SidecarFactory,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = kafka_settings.with_(
        api_key_hash_key=SECRET, policy_file=str(policy), batch_within_s=0.05
    )
    hashed = api_key_hasher(SECRET)(RAW_KEY)
    worker = worker_factory(settings)

    publisher = EventPublisher.from_settings(settings, linger_ms=5)
    await publisher.start()
    try:
        now = time.time()
        for i in range(60):
            assert publisher.publish(event(RAW_KEY, now - 6 + i * 0.1))
        assert await publisher.flush(10)
    finally:
        await publisher.stop()

    events = await read_topic(settings, settings.events_topic, lambda m: len(m) >= 60)
    assert {m.key for m in events} == {hashed.encode()}
    decisions = await read_topic(settings, settings.decisions_topic, lambda m: len(m) >= 1)
    assert [m.key for m in decisions] == [f"api_key:{hashed}".encode()]
    doc = orjson.loads(decisions[0].value)
    assert doc["subject"] == {"kind": "api_key", "value": hashed}
    assert RAW_KEY.encode() not in decisions[0].value

    sidecar = await sidecar_factory(settings)
    headers = {"X-Enforcer-Key": RAW_KEY, "X-Enforcer-Ip": "192.0.2.10"}
    async with http.get(check_url(sidecar), headers=headers) as resp:
        assert (resp.status, resp.headers[ACTION_HEADER]) == (403, "block")
    worker.stop()
    log = worker.log()
    assert hashed in log  # the decision was logged ...
    assert RAW_KEY not in log  # ... under the hash only
