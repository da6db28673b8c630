"""A three-master Redis Cluster of the tests' own, started from `redis-server
--cluster-enabled yes` on free ports under a temp dir and joined by `redis-cli --cluster
create`. Session-scoped: the cluster is shared by every test here, and each test keeps to its
own key prefix as it does on the single Redis."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from enforcer.core.settings import Settings

MASTERS = 3


class LocalCluster(NamedTuple):
    ports: list[int]
    folder: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def cli(self, *args: str, port: int | None = None) -> str:
        """redis-cli against one node (the first by default); its output."""
        argv = ["redis-cli", "-p", str(port or self.ports[0]), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout


def _node_port() -> int:
    """A free port whose cluster bus port (10,000 above it, so at most 55,535) is free too."""
    for _ in range(200):
        port = random.randrange(20_000, 55_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _start_node(folder: Path, port: int) -> subprocess.Popen[bytes]:
    node = folder / str(port)
    node.mkdir()
    return subprocess.Popen(
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node / "nodes.conf"),
            "--cluster-node-timeout", "5000",
            "--dir", str(node),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(node / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def _wait_ready(cluster: LocalCluster, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if all(
                "cluster_state:ok" in cluster.cli("cluster", "info", port=p) for p in cluster.ports
            ):
                return
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install Debian's redis-server and redis-tools")
    folder = tmp_path_factory.mktemp("redis-cluster")
    cluster = LocalCluster([_node_port() for _ in range(MASTERS)], folder)
    procs = [_start_node(folder, port) for port in cluster.ports]
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if all(cluster.cli("ping", port=p).strip() == "PONG" for p in cluster.ports):
                    break
            except subprocess.CalledProcessError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server cluster nodes did not start")
            time.sleep(0.1)
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{p}" for p in cluster.ports]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        _wait_ready(cluster)
        yield cluster
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster_settings(redis_cluster: LocalCluster, settings: Settings, unique: str) -> Settings:
    """The shared stack's Kafka, with this test's own prefix on the cluster."""
    return settings.with_(
        redis_url=redis_cluster.url,
        redis_cluster=True,
        redis_prefix=f"{settings.redis_prefix}-c{unique}",
    )


@pytest_asyncio.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def single_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()
