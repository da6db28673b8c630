"""Helpers for the fault tests: a worker's own counters read off its /metrics, a Redis server of
a test's own (to kill and restart), and reading a subject's windows back."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from enforcer.core.counts import SubjectBatch, WindowStats
from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.engine.features.request import COUNTERS
from enforcer.store.windows import WindowStore

from ..conftest import ROOT, WorkerProcess, free_port

REDIS_CONF = ROOT / "deploy" / "redis" / "redis.conf"


def scrape(worker: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the worker exports, by name and sorted labels."""
    url = f"http://127.0.0.1:{worker.settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    return sum(
        value
        for (n, have), value in samples.items()
        if n == name and set(labels.items()) <= set(have)
    )


def readyz(worker: WorkerProcess) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{worker.settings.web_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, worker=None) -> float:
    """Poll until `check()` holds; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if worker is not None and worker.proc is not None and worker.proc.poll() is not None:
            break
        try:
            if check():
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    tail = f"\n{worker.tail()}" if worker is not None else ""
    raise AssertionError(f"{what}: not within {timeout_s:g}s{tail}")


def processed(worker: WorkerProcess) -> float:
    """Records the worker has finished with: run through the windows or dead-lettered."""
    samples = scrape(worker)
    return total(samples, "enforcer_events_processed_total") + total(
        samples, "enforcer_events_rejected_total"
    )


async def read_windows(store: WindowStore, subject: Subject) -> WindowStats:
    """A subject's window sums as stored, without counting anything."""
    stats, _ = await store.update([SubjectBatch(subject, [])], columns=COUNTERS)
    return stats[0]


class RedisServer:
    """A redis-server of a test's own, configured as the stack runs it (deploy/redis), so that
    it can be killed and restarted on the same data folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "redis.log").open("ab") as log:
            self.proc = self._spawn(log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                str(REDIS_CONF),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown save, only what the append-only file already holds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def worker_settings(base: Settings, policy_file: Path, **changes: object) -> Settings:
    return base.with_(policy_file=str(policy_file), web_port=free_port(), **changes)
