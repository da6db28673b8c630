"""Every Redis client over TLS as an ACL user: the worker's window store, the sidecar's shared
throttle and the backtest, against a Redis with TLS client certificates required and its
default user off."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis.exceptions import AuthenticationError, ConnectionError

from enforcer.core.connections import redis_client
from enforcer.core.settings import Settings
from enforcer.engine.policy.model import Policy
from enforcer.gateway.settings import SidecarSettings
from enforcer.gateway.sidecar import ACTION_HEADER, Sidecar
from enforcer.tools.backtest import run_backtest
from enforcer.tools.simulate import SimulationConfig, generate, write
from tests.conftest import event, free_port, read_topic
from tests.gateway.conftest import make_decision
from tests.security.conftest import REDIS_USER, SecureRedis

POLICY = """
name: secure-redis
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


def tls_settings(base: Settings, redis: SecureRedis, **changes: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis.url,
        "redis_username": REDIS_USER,
        "redis_password": redis.password,
        "redis_tls_ca_file": str(redis.tls.ca),
        "redis_tls_cert_file": str(redis.tls.client_cert),
        "redis_tls_key_file": str(redis.tls.client_key),
    }
    s = base.with_(**{**values, **changes})
    s.validate()
    return s


@pytest.mark.parametrize(
    ("case", "changes", "error"),
    [
        ("wrong password", {"redis_password": "wrong"}, AuthenticationError),
        ("default user", {"redis_username": "", "redis_password": ""}, AuthenticationError),
        ("CA that did not sign it", {"redis_tls_ca_file": "other"}, ConnectionError),
        ("no client certificate", {"redis_tls_cert_file": "", "redis_tls_key_file": ""},
         ConnectionError),
    ],
)  # fmt: skip
async def test_clients_without_the_user_the_ca_or_a_certificate_are_refused(
    settings: Settings, secure_redis: SecureRedis, case: str, changes: dict, error: type
) -> None:
    if changes.get("redis_tls_ca_file") == "other":
        changes = {"redis_tls_ca_file": str(secure_redis.tls.other_ca)}
    client = redis_client(tls_settings(settings, secure_redis, **changes))
    try:
        with pytest.raises(error) as raised:
            await client.set("probe", "1")
        if error is ConnectionError:  # refused by TLS, before any password was asked for
            assert not isinstance(raised.value, AuthenticationError)
    finally:
        await client.aclose()
    good = redis_client(tls_settings(settings, secure_redis))
    try:
        assert await good.ping()
    finally:
        await good.aclose()


async def test_worker_store_and_sidecar_throttle_work_through_tls_and_an_acl_user(
    kafka_settings: Settings,
    secure_redis: SecureRedis,
    producer: AIOKafkaProducer,
    worker_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    s = tls_settings(kafka_settings, secure_redis, policy_file=str(policy), batch_within_s=0.05)
    worker_factory(s)  # ready only once its store answers PING over TLS
    now = time.time()
    for i in range(60):
        doc = event("k-tls", now - 6 + i * 0.1)
        await producer.send(s.events_topic, key=b"k-tls", value=orjson.dumps(doc))
    await producer.flush()
    messages = await read_topic(s, s.decisions_topic, lambda ms: len(ms) >= 1)
    assert [orjson.loads(m.value)["action"] for m in messages] == ["block"]
    client = redis_client(s)
    try:
        assert [k async for k in client.scan_iter(match=f"{s.redis_prefix}:*", count=1000)]
    finally:
        await client.aclose()

    # The sidecar's shared throttle, failing closed: a Redis it cannot use would answer 503.
    throttle = make_decision("api_key", "k-throttled", "throttle", limit_rps=0.5)
    await producer.send_and_wait(s.decisions_topic, throttle.to_json(), key=b"api_key:k-throttled")
    sidecar = Sidecar.from_settings(s, SidecarSettings(port=free_port(), failure="closed"))
    await sidecar.start()
    try:
        assert await sidecar.cache.wait_ready(20)
        url = f"http://127.0.0.1:{sidecar.port}/v1/check"
        headers = {"X-Enforcer-Key": "k-throttled", "X-Enforcer-Ip": "192.0.2.10"}
        answers = []
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.get(url, headers=headers) as resp:
                    answers.append((resp.status, resp.headers[ACTION_HEADER]))
        assert answers == [(200, "throttle"), (429, "throttle")]
    finally:
        await sidecar.stop()


async def test_backtest_replays_through_tls_and_an_acl_user(
    isolated: Settings, secure_redis: SecureRedis, policy: Policy, tmp_path: Path
) -> None:
    events, labels = generate(SimulationConfig(duration_s=120, seed=5))
    path = tmp_path / "events.jsonl"
    write(events, labels, path, tmp_path / "labels.json")
    s = tls_settings(isolated, secure_redis)
    report = await run_backtest(s, policy, path, batch_size=500, helper_process=False)
    assert report.events == len(events)
    assert report.decisions, "the simulated stream holds attacks"
