"""Worker pods of a secured cluster read the Kafka password from a Secret, never from their spec."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
from pydantic import SecretStr

from services.orchestrator.launchers.kubernetes import (
    KubernetesLauncher,
    KubernetesSettings,
    inference_deployment_manifest,
    training_job_manifest,
)
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings
from tests.unit.deploy.test_manifests import job, pod, serve

PASSWORD = "the-kafka-Password-7"
SECURED = Settings(
    bootstrap_servers="kafka.example.com:9096",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="kafkaml",
    sasl_password=SecretStr(PASSWORD),
    ssl_cafile=Path("/etc/kafkaml/kafka-tls/ca.pem"),
)
K8S = KubernetesSettings(namespace="kafkaml")  # the Secrets' names are deploy/k8s's, by default


@pytest.mark.parametrize("kind", ["training", "inference"])
def test_the_password_comes_from_the_secret_and_the_ca_from_a_mounted_one(kind: str) -> None:
    if kind == "training":
        manifest = training_job_manifest(job(), SECURED, K8S)
    else:
        manifest = inference_deployment_manifest(serve(), SECURED, K8S)
    kubernetes_validate.validate(manifest, "1.33.0", strict=True)
    assert PASSWORD not in json.dumps(manifest)
    spec = pod(manifest)
    container = spec["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["KAFKAML_SASL_PASSWORD"] == {
        "name": "KAFKAML_SASL_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "kafkaml-kafka", "key": "sasl-password"}},
    }
    assert env["KAFKAML_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["KAFKAML_SASL_USERNAME"]["value"] == "kafkaml"
    assert env["KAFKAML_SSL_CAFILE"]["value"] == "/etc/kafkaml/kafka-tls/ca.pem"
    assert {"name": "kafka-tls", "secret": {"secretName": "kafkaml-kafka-tls", "optional": True}} in spec["volumes"]
    mount = {"name": "kafka-tls", "mountPath": "/etc/kafkaml/kafka-tls", "readOnly": True}
    assert mount in container["volumeMounts"]


def test_without_security_no_secret_is_referenced() -> None:
    manifest = training_job_manifest(job(), Settings(bootstrap_servers="kafka:9092"), KubernetesSettings())
    assert "secretKeyRef" not in json.dumps(manifest)
    unmounted = training_job_manifest(
        job(), Settings(bootstrap_servers="kafka:9092"), KubernetesSettings(kafka_tls_secret=None)
    )
    assert "kafka-tls" not in json.dumps(unmounted)


async def never_called(spec: JobSpec | ServeSpec, reason: str) -> None:
    raise AssertionError("no failure is reported here")


def test_a_password_without_its_secret_stops_the_launcher_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="KAFKAML_K8S_KAFKA_SECRET") as error:
        KubernetesLauncher(SECURED, on_failure=never_called, k8s=KubernetesSettings(kafka_secret=""))
    assert PASSWORD not in str(error.value)
    with pytest.raises(ValueError, match="KAFKAML_K8S_KAFKA_SECRET"):
        training_job_manifest(job(), SECURED, KubernetesSettings(kafka_secret=""))
