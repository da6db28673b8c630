"""Servers that require TLS and credentials, started by the tests themselves on free ports:
one Kafka 4 broker (KRaft) whose only client listener is SASL_SSL with SCRAM-SHA-512 and TLS
client certificates, and one Redis with a TLS port, an ACL user and the default user off.
Session-scoped: a broker takes several seconds of CPU to start."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import ROOT, free_port
from tests.security.certs import TlsFiles, make_tls_files

STACK = ROOT / "deploy" / "local" / "stack.sh"
SCRAM_USER = "enforcer"
REDIS_USER = "enforcer-worker"


class SecureKafka(NamedTuple):
    bootstrap: str
    password: str
    tls: TlsFiles
    log: Path


class SecureRedis(NamedTuple):
    url: str  # rediss://, no credentials in it
    password: str
    tls: TlsFiles
    log: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cluster_id() -> str:
    """A KRaft cluster id (a UUID, URL-safe base64) the tool's parser cannot take for an
    option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _broker_properties(folder: Path, port: int, controller: int, tls: TlsFiles) -> Path:
    keystore = folder / "server-keystore.pem"
    keystore.write_text(tls.server_key.read_text() + tls.server_cert.read_text())
    props = folder / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller}",
                f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
                # The broker talks to itself over the same listener, as user `admin`.
                "inter.broker.listener.name=SASL_SSL",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                'username="admin" password="admin-secret";',
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={keystore}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={tls.ca}",
                # A SASL_SSL listener asks for client certificates only when told per listener.
                "listener.name.sasl_ssl.ssl.client.auth=required",
                f"log.dirs={folder / 'data'}",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=2",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "num.partitions=2",
                "default.replication.factor=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
            ]
        )
        + "\n"
    )
    return props


@pytest.fixture(scope="session")
def secure_kafka(
    tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureKafka]:
    """A broker only SCRAM users with a client certificate the test CA signed can use."""
    libs = subprocess.run(
        ["bash", str(STACK), "kafka-libs"], check=True, capture_output=True, text=True, timeout=900
    ).stdout.strip()
    folder = tmp_path_factory.mktemp("kafka-sasl-ssl")
    port, controller = free_port(), free_port()
    props = _broker_properties(folder, port, controller, tls_files)
    password = uuid.uuid4().hex
    classpath = f"{libs}/*"
    log4j = f"-Dlog4j.configuration=file:{ROOT / 'deploy' / 'local' / 'log4j.properties'}"
    # SCRAM credentials live in the cluster metadata; on a new cluster they are written when
    # its storage is formatted.
    subprocess.run(
        [
            "java", log4j, "-cp", classpath, "kafka.tools.StorageTool", "format",
            "-t", _cluster_id(), "-c", str(props),
            "--add-scram", "SCRAM-SHA-512=[name=admin,password=admin-secret]",
            "--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={password}]",
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    log = folder / "kafka.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                "java", "-XX:TieredStopAtLevel=1", "-Xms128m", "-Xmx384m", "-XX:+UseG1GC",
                "-Djava.awt.headless=true", log4j, "-cp", classpath, "kafka.Kafka", str(props),
            ],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ("Kafka Server started" in log.read_text(errors="replace") and _port_open(port)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SASL_SSL broker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield SecureKafka(f"127.0.0.1:{port}", password, tls_files, log)
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def secure_redis(
    tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureRedis]:
    """A Redis reachable only over TLS with a client certificate, as an ACL user: the
    default user is off, so no command runs without the user's password."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    folder = tmp_path_factory.mktemp("redis-tls")
    port = free_port()
    password = uuid.uuid4().hex
    log = folder / "redis.log"
    proc = subprocess.Popen(
        [
            server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(tls_files.server_cert),
            "--tls-key-file", str(tls_files.server_key),
            "--tls-ca-cert-file", str(tls_files.ca),
            "--tls-auth-clients", "yes",
            "--dir", str(folder), "--save", "", "--appendonly", "no",
            "--logfile", str(log),
            "--user", "default", "off",
            "--user", REDIS_USER, "on", f">{password}", "~*", "&*", "+@all",
        ],
        env={**os.environ},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"TLS redis did not start:\n{text[-3000:]}")
            time.sleep(0.1)
        yield SecureRedis(f"rediss://127.0.0.1:{port}/0", password, tls_files, log)
    finally:
        _stop(proc)
