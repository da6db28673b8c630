"""Every Kafka client over TLS and SASL/SCRAM: topics apply, the publisher, the worker's
consumer and producer, and the sidecar's decision cache, against a broker whose only client
listener is SASL_SSL with client certificates required."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from enforcer.core.connections import kafka_options
from enforcer.core.keyhash import api_key_hasher
from enforcer.core.settings import Settings
from enforcer.core.topics import apply_topics, connect_admin
from enforcer.gateway.cache import DecisionCache
from enforcer.gateway.publisher import EventPublisher
from tests.conftest import event
from tests.security.conftest import SCRAM_USER, SecureKafka

POLICY = """
name: secure
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


def secure_settings(base: Settings, kafka: SecureKafka, **changes: object) -> Settings:
    s = base.with_(
        kafka_bootstrap=kafka.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_ca_file=str(kafka.tls.ca),
        kafka_ssl_cert_file=str(kafka.tls.client_cert),
        kafka_ssl_key_file=str(kafka.tls.client_key),
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=SCRAM_USER,
        kafka_sasl_password=kafka.password,
        **changes,
    )
    s.validate()
    return s


async def refused(options: dict) -> bool:
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 20)
        await asyncio.wait_for(admin.list_topics(), 10)
    except Exception:
        return True
    finally:
        await admin.close()
    return False


async def test_clients_without_the_password_the_ca_or_a_certificate_are_refused(
    settings: Settings, secure_kafka: SecureKafka
) -> None:
    good = secure_settings(settings, secure_kafka)
    admin = await connect_admin(good)  # the right credentials work ...
    await admin.close()
    wrong_password = kafka_options(good.with_(kafka_sasl_password="not-the-password"))
    assert await refused(wrong_password)
    other_ca = kafka_options(good.with_(kafka_ssl_ca_file=str(secure_kafka.tls.other_ca)))
    assert await refused(other_ca)
    no_client_cert = kafka_options(good.with_(kafka_ssl_cert_file="", kafka_ssl_key_file=""))
    assert await refused(no_client_cert)
    plaintext = {"bootstrap_servers": secure_kafka.bootstrap}
    assert await refused(plaintext)


async def test_worker_publisher_and_decision_cache_round_trip_over_sasl_ssl(
    isolated: Settings,
    secure_kafka: SecureKafka,
    unique: str,
    worker_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    s = secure_settings(
        isolated,
        secure_kafka,
        events_topic=f"s{unique}.events",
        decisions_topic=f"s{unique}.decisions",
        deadletter_topic=f"s{unique}.deadletter",
        app_id=f"enforcer-secure-{unique}",
        policy_file=str(policy),
        batch_within_s=0.05,
        decision_signing_key="k" * 40,
        api_key_hash_key="h" * 40,
    )
    assert await apply_topics(s)  # topics apply, over SASL_SSL
    worker = worker_factory(s)
    cache = DecisionCache.from_settings(s)
    await cache.start()
    publisher = EventPublisher.from_settings(s, linger_ms=5)
    await publisher.start()
    try:
        assert await cache.wait_ready(30)
        now = time.time()
        for i in range(60):
            assert publisher.publish(event("k-secure", now - 6 + i * 0.1))
        assert await publisher.flush(10)
        deadline = time.monotonic() + 30
        while cache.lookup("k-secure", "192.0.2.10").action != "block":
            if time.monotonic() > deadline:
                pytest.fail(f"no block over SASL_SSL; cache {cache.stats()}\n{worker.tail()}")
            await asyncio.sleep(0.2)
        verdict = cache.lookup("k-secure", "192.0.2.10")
        assert verdict.subject is not None
        assert verdict.subject.value == api_key_hasher("h" * 40)("k-secure")
        stats = cache.stats()
        assert (stats.unsigned, stats.forged) == (0, 0)  # the worker signed what it wrote
    finally:
        await publisher.stop()
        await cache.stop()
        worker.stop()
        admin = await connect_admin(s)
        try:
            await admin.delete_topics([s.events_topic, s.decisions_topic, s.deadletter_topic])
        finally:
            await admin.close()
