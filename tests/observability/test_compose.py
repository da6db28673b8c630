"""deploy/docker-compose.yml agrees with the local stack and provisions the same dashboard and
alert rules the other tests prove (Docker is not needed to check that)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pytest
import yaml

from enforcer.core.settings import Settings
from tests.conftest import ROOT

from .conftest import ALERT_RULES, DASHBOARD, PROMETHEUS_CONFIG

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
GRAFANA = DEPLOY / "grafana"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def server_properties() -> dict[str, str]:
    props = {}
    for line in (DEPLOY / "local" / "server.properties").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def stack_default(variable: str) -> int:
    """A port default of deploy/local/stack.sh, e.g. REDIS_PORT=${ENFORCER_REDIS_PORT:-16379}."""
    script = (DEPLOY / "local" / "stack.sh").read_text()
    match = re.search(rf"^\w+=\$\{{{variable}:-(\d+)\}}$", script, re.M)
    assert match, f"stack.sh has no default for {variable}"
    return int(match.group(1))


def mounts(service: dict[str, Any]) -> dict[PurePosixPath, Path]:
    """Container path -> host path of a service's bind mounts (host paths relative to deploy/)."""
    found = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        if host.startswith("."):
            found[PurePosixPath(container)] = (COMPOSE.parent / host).resolve()
    return found


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a file the container reads lives in this repository."""
    path = PurePosixPath(container_path)
    for target, host in mounts(service).items():
        if path == target or target in path.parents:
            return host / path.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the repository")


def flag(command: list[str], name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    return value


def port_of(hostport: str) -> int:
    return int(hostport.rsplit(":", 1)[1].split("/")[0])


def test_kafka_is_configured_exactly_like_the_local_broker(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:4.0.1"
    env = {k: str(v) for k, v in kafka["environment"].items()}
    for key, value in server_properties().items():
        # The image's rule: '.' -> '_', '_' -> '__', '-' -> '___', upper case, KAFKA_ prefix.
        name = "KAFKA_" + key.replace("-", "___").replace("_", "__").replace(".", "_").upper()
        assert name in env, f"{key} of server.properties is missing as {name}"
        if key != "log.dirs":  # the only deliberate difference: a folder inside the container
            assert env[name] == value, f"{name}={env[name]}, server.properties has {key}={value}"
    assert "CLUSTER_ID" in env  # KRaft storage is formatted with it on first start


def test_services_use_the_local_stack_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert all(s.get("network_mode") == "host" for s in services.values())
    props = server_properties()
    kafka_port = stack_default("ENFORCER_KAFKA_PORT")
    controller_port = stack_default("ENFORCER_KAFKA_CONTROLLER_PORT")
    assert props["listeners"] == (
        f"PLAINTEXT://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}"
    )
    redis_command = services["redis"]["command"]
    redis_port = redis_command[redis_command.index("--port") + 1]
    assert redis_port == str(stack_default("ENFORCER_REDIS_PORT"))
    assert services["redis"]["image"] == "redis:7"

    worker_port = int(services["worker"]["environment"]["ENFORCER_WEB_PORT"])
    assert worker_port == Settings().web_port
    prometheus_config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    [job] = [j for j in prometheus_config["scrape_configs"] if j["job_name"] == "enforcer"]
    assert [port_of(t) for c in job["static_configs"] for t in c["targets"]] == [worker_port]

    prometheus_port = port_of(flag(services["prometheus"]["command"], "web.listen-address"))
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert port_of(datasource["url"]) == prometheus_port
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_PORT"] == "3000"


def test_enforcer_services_use_the_local_settings(compose: dict[str, Any]) -> None:
    for name in ("topics", "worker"):
        service = compose["services"][name]
        env = {k: str(v) for k, v in service["environment"].items()}
        settings = Settings.from_env(env)  # unknown ENFORCER_* variables would raise
        for variable, value in env.items():
            field = variable.removeprefix("ENFORCER_").lower()
            local = str(getattr(Settings(), field))
            assert value == local, f"{name}: {variable}={value}, the local default is {local}"
        assert host_path(service, f"/app/{settings.policy_file}") == ROOT / settings.policy_file
    assert compose["services"]["topics"]["command"] == ["topics", "apply"]
    assert compose["services"]["worker"]["command"] == ["worker"]
    depends = compose["services"]["worker"]["depends_on"]
    assert depends["topics"]["condition"] == "service_completed_successfully"
    dockerfile = (ROOT / compose["services"]["worker"]["build"]["dockerfile"]).read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert re.search(r"^RUN pip install (-e )?\.", dockerfile, re.M)


def test_prometheus_loads_the_tested_config_and_alert_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config_file = flag(prometheus["command"], "config.file")
    assert host_path(prometheus, config_file) == PROMETHEUS_CONFIG
    rule_files = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]
    # Prometheus resolves rule files relative to its config file.
    in_container = [PurePosixPath(config_file).parent / f for f in rule_files]
    assert [host_path(prometheus, str(p)) for p in in_container] == [ALERT_RULES]


def test_grafana_provisions_the_tested_dashboard_on_the_provisioned_datasource(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning") == GRAFANA / "provisioning"
    [provider] = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "enforcer.yml").read_text()
    )["providers"]
    dashboards = host_path(grafana, provider["options"]["path"])
    assert sorted(dashboards.glob("*.json")) == [DASHBOARD]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == DASHBOARD

    [datasource] = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    dashboard = orjson.loads(DASHBOARD.read_text())
    used = {
        (thing["datasource"]["type"], thing["datasource"]["uid"])
        for panel in dashboard["panels"]
        for thing in [panel, *panel.get("targets", [])]
        if "datasource" in thing
    } | {(v["datasource"]["type"], v["datasource"]["uid"]) for v in dashboard["templating"]["list"]}
    assert used == {(datasource["type"], datasource["uid"])}


def test_redis_runs_with_the_shared_config_and_its_append_only_file_on(
    compose: dict[str, Any],
) -> None:
    conf = DEPLOY / "redis" / "redis.conf"
    settings = dict(
        line.split(None, 1)
        for line in conf.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert (settings["appendonly"], settings["appendfsync"]) == ("yes", "everysec")
    redis = compose["services"]["redis"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in redis["volumes"]}
    assert mounted["./redis/redis.conf"] == redis["command"][1]
    assert "redis/redis.conf" in (DEPLOY / "local" / "stack.sh").read_text()
