"""The environment of what runs users' code is an allow-list: the validator, local workers, worker pods."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from services.orchestrator.launchers.kubernetes import training_job_manifest
from shared.events.training import JobModel, JobSpec
from shared.settings import Settings
from shared.stack.runner import SERVICES, ServiceDef, service_env
from shared.workerenv import worker_environment

SETTINGS = Settings(
    home=Path("/tmp/kafkaml-home"),
    bootstrap_servers="127.0.0.1:9092",
    database_url="postgresql://postgres:owner@/postgres?host=/x",
    api_database_url="postgresql://kafkaml_api:ro@/postgres?host=/x",
    api_token="s3cret-token",
    validation_timeout_s=12.5,
    validation_memory_mb=777,
)

PARENT_ENV = {
    "PATH": "/usr/bin",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "2",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "KAFKAML_DATABASE_URL": "postgresql://leak@/x",
    "KAFKAML_HOME": "/somewhere/else",
    "KUBERNETES_SERVICE_HOST": "10.0.0.1",
    "HOME": "/root",
}
DROPPED = ("AWS_SECRET_ACCESS_KEY", "KAFKAML_DATABASE_URL", "KAFKAML_HOME", "KUBERNETES_SERVICE_HOST")


def test_the_worker_environment_keeps_the_allow_list_and_drops_the_rest() -> None:
    env = worker_environment(SETTINGS, PARENT_ENV)
    assert env["PATH"] == "/usr/bin" and env["LANG"] == "C.UTF-8" and env["OMP_NUM_THREADS"] == "2"
    assert env["KAFKAML_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    for name in (*DROPPED, "HOME"):
        assert name not in env
    assert "s3cret-token" not in env.values() and "aws-secret" not in env.values()


def test_the_validator_gets_the_worker_environment_and_its_sandbox_limits_only() -> None:
    validator = next(s for s in SERVICES if s.name == "validator")
    env = service_env(validator, SETTINGS, PARENT_ENV)
    assert env["PATH"] == "/usr/bin"
    assert env["KAFKAML_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert env["KAFKAML_TOPIC_PREFIX"] == "kafkaml"
    assert env["KAFKAML_VALIDATION_TIMEOUT_S"] == "12.5"
    assert env["KAFKAML_VALIDATION_MEMORY_MB"] == "777"
    for name in (*DROPPED, "KAFKAML_API_TOKEN", "KAFKAML_API_DATABASE_URL", "KAFKAML_TRAINER_MEMORY_MB"):
        assert name not in env
    assert {"postgresql://postgres:owner@/postgres?host=/x", "s3cret-token"}.isdisjoint(env.values())


def test_the_validator_reads_its_settings_back_from_that_environment() -> None:
    validator = next(s for s in SERVICES if s.name == "validator")
    env = service_env(validator, SETTINGS, PARENT_ENV)
    seen = Settings(**{k[len("KAFKAML_") :].lower(): v for k, v in env.items() if k.startswith("KAFKAML_")})
    assert seen.validation_timeout_s == 12.5 and seen.validation_memory_mb == 777
    assert seen.bootstrap_servers == "127.0.0.1:9092" and seen.database_url is None and seen.api_token is None


def test_a_service_that_runs_users_code_cannot_be_granted_a_secret() -> None:
    with pytest.raises(ValueError, match="database_url"):
        ServiceDef("bad", "bad", user_code_settings=("database_url",))


def test_worker_pods_get_the_worker_environment_without_inheriting_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PARENT_ENV.items():
        monkeypatch.setenv(name, value)
    spec = JobSpec(
        job_id="job-1",
        deployment_id=1,
        framework="tensorflow",
        models=[JobModel(result_id=1, model_id=1, name="m", code="model = build()", upper_model_id=None)],
        batch_size=8,
        fit={"epochs": 1},
        evaluate={},
        confusion_matrix=False,
    )
    manifest = training_job_manifest(spec, SETTINGS)
    env = {e["name"]: e.get("value") for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KAFKAML_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092" and env["KAFKAML_JOB_ID"] == "job-1"
    # base={}: nothing of the orchestrator's own environment, not even allow-listed names.
    assert not [name for name in env if name in DROPPED or name in ("PATH", "LANG", "OMP_NUM_THREADS")]


SECURED = SETTINGS.model_copy(
    update={
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "kafkaml",
        "sasl_password": SecretStr("services-password"),
        "worker_sasl_username": "kafkaml-worker",
        "worker_sasl_password": SecretStr("workers-password"),
    }
)


def test_workers_log_in_as_the_workers_user_never_as_the_services() -> None:
    env = worker_environment(SECURED, PARENT_ENV)
    assert env["KAFKAML_SASL_USERNAME"] == "kafkaml-worker" and env["KAFKAML_SASL_PASSWORD"] == "workers-password"
    assert "services-password" not in " ".join(env.values())
    # A worker user without its password (Kubernetes: the pod reads it from a Secret): still not the services'.
    partial = worker_environment(SECURED.model_copy(update={"worker_sasl_password": None}), PARENT_ENV)
    assert partial["KAFKAML_SASL_USERNAME"] == "kafkaml-worker" and "KAFKAML_SASL_PASSWORD" not in partial
    # Without a worker user, workers log in as the services do (one login for a cluster that has one).
    shared_login = worker_environment(SECURED.model_copy(update={"worker_sasl_username": None}), PARENT_ENV)
    assert shared_login["KAFKAML_SASL_USERNAME"] == "kafkaml"


def test_only_the_orchestrator_holds_the_workers_password_and_the_validator_logs_in_as_a_service() -> None:
    envs = {service.name: service_env(service, SECURED, PARENT_ENV) for service in SERVICES}
    holders = {name for name, env in envs.items() if env.get("KAFKAML_WORKER_SASL_PASSWORD")}
    assert holders == {"orchestrator"}
    validator = envs["validator"]
    assert validator["KAFKAML_SASL_USERNAME"] == "kafkaml" and validator["KAFKAML_SASL_PASSWORD"] == "services-password"


def test_worker_pods_read_the_workers_password_from_its_key_of_the_kafka_secret() -> None:
    spec = JobSpec(
        job_id="j", deployment_id=1, framework="tensorflow", batch_size=1, fit={}, evaluate={},
        confusion_matrix=False, models=[JobModel(result_id=1, model_id=1, name="m", code="model = 1")],
    )  # fmt: skip
    for settings in (SECURED, SECURED.model_copy(update={"worker_sasl_password": None})):
        env = training_job_manifest(spec, settings)["spec"]["template"]["spec"]["containers"][0]["env"]
        by_name = {e["name"]: e for e in env}
        assert by_name["KAFKAML_SASL_USERNAME"]["value"] == "kafkaml-worker"
        ref = by_name["KAFKAML_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "kafkaml-kafka", "key": "worker-sasl-password"}
        assert "password" not in str([e.get("value") for e in env])
