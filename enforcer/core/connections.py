"""How every Kafka and Redis client connects: security protocol, TLS files, SASL and ACL
credentials, read from the shared settings in one place.

Every client enforcer makes (the worker's consumer and producer, the sidecar's decision cache
and throttle, the publisher, topics apply, the tools) takes its options from here, so a
cluster that requires TLS and SCRAM is reached by all of them or the settings are refused at
start-up, never by some clients and not others.
"""

from __future__ import annotations

import ssl
from typing import Any

import redis.asyncio as aioredis
from aiokafka.helpers import create_ssl_context

from enforcer.core.settings import Settings


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of Kafka connections; None under a protocol without TLS. Hostnames are
    checked against the brokers' certificates."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_ca_file or None,
        certfile=settings.kafka_ssl_cert_file or None,
        keyfile=settings.kafka_ssl_key_file or None,
    )
    return context


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (consumer, producer, admin): the bootstrap
    servers and how to authenticate to them."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def redis_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `redis.asyncio.Redis.from_url(settings.redis_url, ...)` beside
    the URL: an ACL user and password given apart from it, and the TLS files of a rediss://
    URL (whose certificate is then always verified)."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password:
        options["password"] = settings.redis_password
    if settings.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        if settings.redis_tls_ca_file:
            options["ssl_ca_certs"] = settings.redis_tls_ca_file
        if settings.redis_tls_cert_file:
            options["ssl_certfile"] = settings.redis_tls_cert_file
            options["ssl_keyfile"] = settings.redis_tls_key_file
    return options


def redis_client(settings: Settings, **extra: Any) -> aioredis.Redis | aioredis.RedisCluster:
    """A redis.asyncio client on the settings' Redis (a cluster client under
    ENFORCER_REDIS_CLUSTER), for the CLI and tools."""
    if settings.redis_cluster:
        return aioredis.RedisCluster.from_url(
            settings.redis_url, **redis_options(settings), **extra
        )
    return aioredis.Redis.from_url(settings.redis_url, **redis_options(settings), **extra)
