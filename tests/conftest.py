"""Fixtures for tests that run against the real local stack (Kafka 4 + Redis 7).

Every test gets its own Redis prefix and, where it needs Kafka, its own topics and consumer
group, so tests never see each other's state and can run against a long-lived stack. Both are
removed afterwards: a broker left holding every run's topics (a few hundred partitions a run)
spends a growing share of a core on garbage collection while idle, which the benchmarks feel.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from enforcer.core.settings import Settings
from enforcer.core.topics import apply_topics, connect_admin
from enforcer.engine.policy import Policy, load_policy

from .processes import ChildProcess, enforcer_env

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "deploy" / "policies" / "default.yaml"


def _reachable(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the local stack; a test run never silently skips when the stack is down."""
    base = Settings.from_env()
    redis_hostport = base.redis_url.split("//", 1)[1].split("/", 1)[0]
    for what, hostport in (
        ("Kafka", base.kafka_bootstrap.split(",")[0]),
        ("Redis", redis_hostport),
    ):
        if not _reachable(hostport):
            pytest.fail(
                f"{what} is not reachable at {hostport}: start the stack with `make stack-up`"
            )
    return base.with_(redis_prefix=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def policy() -> Policy:
    return load_policy(DEFAULT_POLICY)


@pytest_asyncio.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def isolated(
    settings: Settings, unique: str, redis_client: aioredis.Redis
) -> AsyncIterator[Settings]:
    """Settings with a Redis namespace of this test's own, removed afterwards."""
    prefix = f"{settings.redis_prefix}-{unique}"
    yield settings.with_(redis_prefix=prefix)
    async for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        await redis_client.unlink(key)


@pytest_asyncio.fixture
async def topic_prefix(settings: Settings, unique: str) -> AsyncIterator[str]:
    """A prefix for this test's topic names; every topic under it is deleted afterwards."""
    prefix = f"t{unique}."
    yield prefix
    admin = await connect_admin(settings)
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


@pytest_asyncio.fixture
async def kafka_settings(isolated: Settings, unique: str, topic_prefix: str) -> Settings:
    """Isolated settings plus topics and a consumer group of this test's own, created."""
    s = isolated.with_(
        events_topic=f"{topic_prefix}events",
        decisions_topic=f"{topic_prefix}decisions",
        deadletter_topic=f"{topic_prefix}deadletter",
        app_id=f"enforcer-test-{unique}",
    )
    await apply_topics(s)
    return s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess(ChildProcess):
    """`enforcer worker` in a child process, as an operator would run it."""

    name = "worker"

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(log_path)
        self.settings = settings

    def start(self, timeout_s: float = 60.0) -> None:
        self.spawn([sys.executable, "-m", "enforcer", "worker"], enforcer_env(self.settings))
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.settings.web_port}/readyz"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if orjson.loads(resp.read()).get("ready"):
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"worker not ready in {timeout_s}s:\n{self.tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        super().stop(timeout_s)


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[[Settings], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(s: Settings) -> WorkerProcess:
        worker = WorkerProcess(
            s.with_(web_port=free_port()), tmp_path / f"worker{len(started)}.log"
        )
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest_asyncio.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await p.start()
    yield p
    await p.stop()


async def read_topic(
    settings: Settings,
    topic: str,
    until: Callable[[list], bool],
    timeout_s: float = 20.0,
) -> list:
    """Read a topic from the start until `until(messages)` holds or the time runs out."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    messages: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not until(messages):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batch.values():
                messages.extend(records)
    finally:
        await consumer.stop()
    return messages


def event(api_key: str, ts: float, **fields: object) -> dict:
    """A valid gateway_event.v1 with a fresh id; override any field."""
    doc = {"event_id": uuid.uuid4().hex, "ts": ts, "api_key": api_key, "ip": "198.51.100.7"}
    doc.update(fields)
    return doc
