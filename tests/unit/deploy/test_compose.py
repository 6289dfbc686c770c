"""docker-compose.yml validates against the Compose specification (check-jsonschema's
built-in, vendored schema: offline) and runs Apache Kafka in KRaft mode, PostgreSQL
with a volume, the migrations as a pre-start step, every service and Grafana, each
with the health checks and start-up conditions that order them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.stack.runner import SERVICES

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"


def check_jsonschema() -> str | None:
    beside = Path(sys.executable).parent / "check-jsonschema"
    return str(beside) if beside.exists() else shutil.which("check-jsonschema")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    tool = check_jsonschema()
    if tool is None:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_of_the_stack_runs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    commands = {" ".join(s.get("command", [])) for s in services.values()}
    for service in SERVICES:
        assert f"python -m {service.module}" in commands, (
            f"{service.name} ({service.module}) is not in the compose file"
        )
    assert {"kafka", "postgres", "migrate", "grafana"} <= set(services)


def test_kafka_is_apache_kafka_pinned_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert not [k for k in env if "ZOOKEEPER" in k]
    assert any(v.endswith(":/var/lib/kafka/data") for v in kafka["volumes"])


def test_postgresql_keeps_its_data_in_a_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-\w+)?", postgres["image"])
    volume = next(v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data"))
    assert volume.split(":")[0] in compose["volumes"]
    assert "${POSTGRES_PASSWORD" in postgres["environment"]["POSTGRES_PASSWORD"]


def test_migrations_run_before_every_service_that_uses_the_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "migrate" in " ".join(services["migrate"]["command"])
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in services.items():
        env = service.get("environment", {})
        if any(k in env for k in ("KAFKAML_DATABASE_URL", "KAFKAML_API_DATABASE_URL")) and name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_health_checks_and_start_up_conditions(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "postgres", "api", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] in ("service_healthy", "service_completed_successfully"), name
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits on {dependency}, which has no health check"
        if "KAFKAML_BOOTSTRAP_SERVERS" in service.get("environment", {}):
            assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name


def test_secrets_only_where_needed_and_never_literal(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|TOKEN|DATABASE_URL", key):
                assert "${" in str(value), f"{name}: {key} is a literal"
    # Users' code runs in the validator and in the trainers: Kafka settings only there.
    assert not [k for k in services["validator"]["environment"] if "DATABASE" in k or "TOKEN" in k]
    assert "KAFKAML_DATABASE_URL" not in services["api"]["environment"]


def test_grafana_gets_its_datasource_and_dashboards_provisioned(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"])
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/dashboards"] == "/etc/grafana/dashboards"
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/kafkaml.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    datasource = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/kafkaml.yaml").read_text())
    variables = set(re.findall(r"\$\{(\w+)\}", str(datasource)))
    assert variables <= set(grafana["environment"])
    assert list((REPO / "deploy/grafana/dashboards").glob("*.json"))


def test_images_are_built_from_the_project_dockerfile(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile", name
            target = service["build"]["target"]
            assert re.search(rf"^FROM \S+ AS {target}$", (REPO / "deploy/docker/Dockerfile").read_text(), re.M)


def test_workers_run_in_a_runner_without_credentials_not_in_the_orchestrator(compose: dict[str, Any]) -> None:
    services = compose["services"]
    orchestrator, runner = services["orchestrator"], services["runner"]
    # The orchestrator hands specs over (spool) and starts no worker; its image has no framework.
    assert orchestrator["environment"]["KAFKAML_LAUNCHER"] == "spool"
    assert orchestrator["build"]["target"] == "service"
    assert runner["command"] == ["python", "-m", "services.orchestrator.launchers.spool_runner"]
    # No credential of any kind in the runner: its children run users' code.
    secret = re.compile(r"DATABASE|TOKEN|PASSWORD|BUS_KEY|VALIDATOR_KEY|SECRET")
    assert not [key for key in runner["environment"] if secret.search(key)]
    assert "postgres" not in runner.get("depends_on", {}) and "migrate" not in runner.get("depends_on", {})
    # The two share only the spool volume, where the orchestrator's spool folder is the runner's.
    mounts = {m.split(":")[0]: m.split(":")[1] for m in runner["volumes"]}
    assert mounts == {m.split(":")[0]: m.split(":")[1] for m in orchestrator["volumes"]}
    assert set(mounts) <= set(compose["volumes"])
    home = runner["environment"]["KAFKAML_HOME"]
    assert orchestrator["environment"]["KAFKAML_SPOOL_DIR"] == f"{home}/spool"
    assert mounts["spool"] == home
    assert runner["cap_drop"] == ["ALL"] and runner["read_only"] is True
