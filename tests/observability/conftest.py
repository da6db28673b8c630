"""A real Prometheus (Debian's `prometheus` package) as a child process, on a free port."""

from __future__ import annotations

import math
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from enforcer.core.settings import Settings
from enforcer.gateway.settings import SidecarSettings
from tests.conftest import ROOT, free_port
from tests.gateway.conftest import SidecarProcess
from tests.processes import ChildProcess

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERT_RULES = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "enforcer.json"
SIDECAR_JOB = "enforcer-sidecar"


def binary(name: str) -> str:
    """A Prometheus tool; its absence fails the test with the fix, it never skips it."""
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{name} not found: install Debian's prometheus package "
            "(`make deps` installs deploy/local/packages.txt)"
        )
    return path


class QueryError(AssertionError):
    pass


class PrometheusProcess(ChildProcess):
    """Prometheus with deploy/prometheus/prometheus.yml, its enforcer job pointed at `target`,
    its enforcer-sidecar job at `sidecar_target` (or removed), and its intervals shortened so
    a test sees rates within seconds."""

    name = "prometheus"

    def __init__(
        self, tmp: Path, target: str, sidecar_target: str | None = None, interval: str = "1s"
    ) -> None:
        super().__init__(tmp / "prometheus.log")
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
        config["global"].update(
            scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval
        )
        config["rule_files"] = [str((PROMETHEUS_DIR / f).resolve()) for f in config["rule_files"]]
        [job] = [j for j in config["scrape_configs"] if j["job_name"] == "enforcer"]
        job["static_configs"] = [{"targets": [target]}]
        [sidecar_job] = [j for j in config["scrape_configs"] if j["job_name"] == SIDECAR_JOB]
        if sidecar_target is None:
            config["scrape_configs"].remove(sidecar_job)
        else:
            sidecar_job["static_configs"] = [{"targets": [sidecar_target]}]
        self.config_path = tmp / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self, timeout_s: float = 30.0) -> None:
        self.spawn(
            [
                binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ]
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready in {timeout_s}s:\n{self.tail()}")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                doc = orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:  # Prometheus answers bad queries with 400 + JSON
            doc = orjson.loads(exc.read())
        if doc.get("status") != "success":
            raise QueryError(f"{params or path}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result as a list of {metric, value}; scalars become one item."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, holds: Callable[[float], bool], timeout_s: float = 60.0) -> float:
        deadline = time.monotonic() + timeout_s
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and holds(last):
                return last
            time.sleep(0.5)
        raise AssertionError(f"{expr} never held within {timeout_s}s (last value {last})")


def finite(result: list[dict[str, Any]]) -> bool:
    return bool(result) and all(math.isfinite(float(r["value"][1])) for r in result)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusProcess]]:
    started: list[PrometheusProcess] = []

    def start(target: str, sidecar_target: str | None = None) -> PrometheusProcess:
        prom = PrometheusProcess(tmp_path / f"prometheus{len(started)}", target, sidecar_target)
        started.append(prom)
        prom.start()
        return prom

    yield start
    for prom in started:
        prom.stop()


@pytest.fixture
def sidecar_process(kafka_settings: Settings, tmp_path: Path) -> Iterator[SidecarProcess]:
    """`enforcer gateway serve` on the test's decisions topic, started and ready. A child
    process: Prometheus' helpers block the test's event loop while they wait."""
    sidecar = SidecarProcess(
        kafka_settings, SidecarSettings(port=free_port()), tmp_path / "sidecar.log"
    )
    sidecar.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            sidecar.check_alive()
            try:
                with urllib.request.urlopen(sidecar.url("/readyz"), timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sidecar not ready in 30 s:\n{sidecar.tail()}")
            time.sleep(0.2)
        yield sidecar
    finally:
        sidecar.stop()
