"""`enforcer bench --only sidecar`: the check sidecar's latency on loopback.

The sidecar runs as `enforcer gateway serve` in a child process, as deployed, on its own
decisions topic and Redis prefix. The client sends one request at a time over a keep-alive
connection (as NGINX does with `keepalive` to its auth upstream) with a minimal HTTP/1.1
client, so the figures are the sidecar's round trip, not a client library's overhead.
Targets: p99 <= 2 ms for a cached allow, <= 5 ms when the Redis throttle is consulted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from enforcer.core.connections import redis_client
from enforcer.core.decisions import Decision, Subject
from enforcer.core.settings import Settings
from enforcer.core.topics import apply_topics, load_catalogue
from enforcer.gateway.settings import SidecarSettings
from enforcer.tools.bench.run import BenchRun

ROOT = Path(__file__).resolve().parents[3]
WARMUP = 300
REQUESTS = 3000


class Case(NamedTuple):
    name: str
    key: str
    expected_status: int
    target_p99_ms: float | None


CASES = (
    Case("cached allow (no decision)", "bench-clean", 200, 2.0),
    Case("cached block", "bench-blocked", 403, 2.0),
    Case("throttled key within its rate (Redis GCRA)", "bench-throttle-high", 200, 5.0),
    Case("throttled key over its rate (Redis GCRA, 429)", "bench-throttle-low", 429, 5.0),
)


class _Client:
    """One keep-alive HTTP/1.1 connection; reads the status and the body, nothing more."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> _Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        return (await self.exchange(raw))[0]

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return int(status_line.split()[1]), body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def _check_request(key: str, port: int) -> bytes:
    return (
        f"GET /v1/check HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"X-Enforcer-Key: {key}\r\nX-Enforcer-Ip: 198.51.100.23\r\n\r\n"
    ).encode()


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    raw = f"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("sidecar exited during start-up")
        try:
            client = await _Client.connect(port)
            try:
                if await client.request(raw) == 200:
                    return
            finally:
                await client.close()
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"sidecar not ready in {timeout_s} s")


def _decision(key: str, action: str, limit_rps: float | None = None) -> Decision:
    now = time.time()
    return Decision(
        subject=Subject("api_key", key),
        action=action,
        ts=now,
        issued_at=now,
        expires_at=now + 3600,
        rule="bench",
        policy_version="bench@1",
        mode="enforce",
        limit_rps=limit_rps,
    )


async def sidecar_bench(bench: BenchRun) -> list[str]:
    settings = bench.settings
    run = uuid.uuid4().hex[:8]
    s = settings.with_(
        decisions_topic=f"bench-{run}.decisions",
        redis_prefix=f"{settings.redis_prefix}-bench-{run}",
    )
    await apply_topics(s, [t for t in load_catalogue(s) if t.role == "decisions"])
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for decision in (
            _decision("bench-blocked", "block"),
            _decision("bench-throttle-high", "throttle", limit_rps=1_000_000),
            _decision("bench-throttle-low", "throttle", limit_rps=0.001),
        ):
            await producer.send_and_wait(
                s.decisions_topic, decision.to_json(), key=decision.subject.key.encode()
            )
    finally:
        await producer.stop()

    sidecar = SidecarSettings(port=_free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
    env.update(s.to_env())
    env.update(sidecar.to_env())
    env["ENFORCER_LOG_LEVEL"] = "warning"
    proc = subprocess.Popen(
        [sys.executable, "-m", "enforcer", "gateway", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lines: list[str] = []
    try:
        await _wait_ready(sidecar.port, proc)
        client = await _Client.connect(sidecar.port)
        try:
            for case in CASES:
                lines.append(await _measure(client, case, sidecar.port))
            stats_request = f"GET /v1/stats HTTP/1.1\r\nHost: 127.0.0.1:{sidecar.port}\r\n\r\n"
            _, body = await client.exchange(stats_request.encode())
            failed_open = orjson.loads(body)["failed_open"]["redis"]
            if failed_open:
                lines.append(
                    f"{failed_open} throttle checks failed open: Redis answered "
                    f"slower than ENFORCER_SIDECAR_REDIS_TIMEOUT_S"
                )
        finally:
            await client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        await _clean_up(s)
    lines.append(
        f"sidecar in a child process, 1 keep-alive connection, {REQUESTS} sequential requests "
        f"per case after {WARMUP} warm-up, loopback, {os.cpu_count()} CPUs"
    )
    return lines


async def _measure(client: _Client, case: Case, port: int) -> str:
    raw = _check_request(case.key, port)
    for _ in range(WARMUP):
        await client.request(raw)
    samples: list[float] = []
    wrong = 0
    for _ in range(REQUESTS):
        started = time.perf_counter_ns()
        status = await client.request(raw)
        samples.append((time.perf_counter_ns() - started) / 1e6)
        wrong += status != case.expected_status
    samples.sort()
    p50, p99 = _percentile(samples, 0.50), _percentile(samples, 0.99)
    verdict = ""
    if case.target_p99_ms is not None:
        met = "met" if p99 <= case.target_p99_ms else "MISSED"
        verdict = f"  (target p99 <= {case.target_p99_ms:g} ms: {met})"
    status_note = f", {wrong} unexpected statuses" if wrong else ""
    return (
        f"{case.name:<48} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  max {samples[-1]:6.2f} ms  "
        f"n={REQUESTS}{status_note}{verdict}"
    )


async def _clean_up(s: Settings) -> None:
    client = redis_client(s)
    try:
        async for key in client.scan_iter(match=f"{s.redis_prefix}:*", count=1000):
            await client.unlink(key)
    finally:
        await client.aclose()
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([s.decisions_topic])
    finally:
        await admin.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
