"""Fixtures for the gateway tests: decisions on a test's own topic, sidecars and real nginx."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import aiohttp
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from enforcer.core.decisions import Decision, Reason, Subject
from enforcer.core.settings import Settings
from enforcer.gateway.settings import SidecarSettings
from enforcer.gateway.sidecar import Sidecar
from tests.conftest import ROOT, free_port
from tests.processes import ChildProcess, enforcer_env

NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"


def make_decision(
    kind: str,
    value: str,
    action: str,
    *,
    mode: str = "enforce",
    limit_rps: float | None = None,
    expires_in: float | None = 300.0,
    now: float | None = None,
) -> Decision:
    now = time.time() if now is None else now
    return Decision(
        subject=Subject(kind, value),
        action=action,
        ts=now,
        issued_at=now,
        expires_at=None if expires_in is None else now + expires_in,
        rule=f"test-{action}",
        policy_version="test@1",
        mode=mode,
        limit_rps=limit_rps,
        reasons=(Reason("volume", "rps", 9.0, 4.0, "10s"),),
    )


Publish = Callable[..., Awaitable[None]]


@pytest.fixture
def publish(producer: AIOKafkaProducer, kafka_settings: Settings) -> Publish:
    """Produce decisions to the test's decisions topic, keyed by subject, as the worker does."""

    async def send(*decisions: Decision) -> None:
        for d in decisions:
            await producer.send_and_wait(
                kafka_settings.decisions_topic, d.to_json(), key=d.subject.key.encode()
            )

    return send


SidecarFactory = Callable[..., Awaitable[Sidecar]]


@pytest_asyncio.fixture
async def sidecar_factory(kafka_settings: Settings) -> AsyncIterator[SidecarFactory]:
    """In-process sidecars on free loopback ports, stopped afterwards."""
    started: list[Sidecar] = []

    async def start(
        settings: Settings | None = None, wait_ready: bool = True, **overrides: object
    ) -> Sidecar:
        sidecar_settings = SidecarSettings().with_(port=free_port(), **overrides)
        sidecar = Sidecar.from_settings(settings or kafka_settings, sidecar_settings)
        started.append(sidecar)
        await sidecar.start()
        if wait_ready:
            assert await sidecar.cache.wait_ready(20), "decision cache did not catch up in 20 s"
        return sidecar

    yield start
    for sidecar in started:
        await sidecar.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def check_url(sidecar: Sidecar) -> str:
    return f"http://127.0.0.1:{sidecar.port}/v1/check"


class RawAnswer(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class RawConnection:
    """One TCP connection to a server, for requests no well-behaved HTTP client would send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, timeout_s: float = 5.0) -> RawAnswer:
        """Read one HTTP answer (with a Content-Length) off the connection."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout_s)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return RawAnswer(int(status_line.split()[1]), headers, body)

    async def closed_within(self, timeout_s: float) -> bool:
        """True once the server closes the connection (EOF) within `timeout_s`; unread answer
        bytes before the close count as a failure."""
        try:
            data = await asyncio.wait_for(self.reader.read(), timeout_s)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        assert data == b"", f"unexpected answer before the close: {data[:200]!r}"
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def raw_request(port: int, data: bytes) -> RawAnswer:
    """Send `data` on a fresh connection and read the one answer."""
    connection = await RawConnection.open(port)
    try:
        await connection.send(data)
        return await connection.answer()
    finally:
        await connection.close()


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float, step_s: float = 0.01
) -> float:
    """Poll until `predicate()` holds; returns the seconds it took, or fails the test."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(step_s)
    pytest.fail(f"condition not met within {timeout_s} s")


class SidecarProcess(ChildProcess):
    """`enforcer gateway serve` in a child process, as an operator runs it."""

    name = "sidecar"

    def __init__(self, settings: Settings, sidecar: SidecarSettings, log_path: Path) -> None:
        super().__init__(log_path)
        self.settings = settings
        self.sidecar = sidecar

    def start(self) -> None:
        self.spawn(
            [sys.executable, "-m", "enforcer", "gateway", "serve"],
            enforcer_env(self.settings, self.sidecar),
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.sidecar.port}{path}"

    async def wait_ready(self, http: aiohttp.ClientSession, timeout_s: float = 30.0) -> None:
        url = self.url("/readyz")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                pytest.fail(f"sidecar exited early:\n{self.tail()}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        pytest.fail(f"sidecar not ready in {timeout_s} s:\n{self.tail()}")


class Nginx:
    """Real nginx running deploy/nginx/nginx.conf with its three addresses moved to free ports,
    as a foreground process with its own prefix, pid and log files."""

    def __init__(self, prefix: Path, sidecar_port: int, upstream_port: int) -> None:
        # Debian installs it in /usr/sbin, which a non-root PATH may lack.
        binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
        if binary is None:
            pytest.fail(
                "nginx is not installed: `make test` installs it (deploy/local/packages.txt)"
            )
        self.binary = binary
        self.prefix = prefix
        self.port = free_port()
        conf = NGINX_CONF.read_text()
        for shipped, ours in (
            ("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.port};"),
            ("server 127.0.0.1:6070;", f"server 127.0.0.1:{sidecar_port};"),
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
            ("worker_processes auto;", "worker_processes 1;"),
        ):
            assert conf.count(shipped) == 1, f"{NGINX_CONF} no longer has {shipped!r}"
            conf = conf.replace(shipped, ours)
        prefix.mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(conf)
        self.error_log = prefix / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        globals_ = "daemon off;"
        if os.geteuid() == 0:
            globals_ += " user root;"  # workers may then read this test's private temp folder
        self._out = (self.prefix / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.prefix), "-c", str(self.conf)]
            + ["-e", str(self.error_log), "-g", globals_],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    async def wait_listening(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"nginx exited early:\n{self.logs()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            except OSError:
                await asyncio.sleep(0.05)
        pytest.fail(f"nginx not listening in {timeout_s} s:\n{self.logs()}")

    def logs(self) -> str:
        files = (self.error_log, self.prefix / "stdout.log")
        return "\n".join(p.read_text()[-3000:] for p in files if p.exists())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator[Callable[[int, int], Nginx]]:
    started: list[Nginx] = []

    def start(sidecar_port: int, upstream_port: int) -> Nginx:
        server = Nginx(tmp_path / f"nginx{len(started)}", sidecar_port, upstream_port)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sidecar_process_factory(
    tmp_path: Path,
) -> Iterator[Callable[[Settings, SidecarSettings], SidecarProcess]]:
    started: list[SidecarProcess] = []

    def start(settings: Settings, sidecar: SidecarSettings) -> SidecarProcess:
        process = SidecarProcess(settings, sidecar, tmp_path / f"sidecar{len(started)}.log")
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()
