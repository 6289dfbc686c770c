"""The manifests the Kubernetes launcher generates validate against the official
Kubernetes schemas (kubernetes-validate, strict: no unknown field) and carry
what the platform needs: ids as labels, no credentials, a restricted pod."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from services.orchestrator.launchers.kubernetes import (
    KubernetesSettings,
    alive_probe_command,
    describe_job_failure,
    describe_pod_problem,
    inference_deployment_manifest,
    label_value,
    object_name,
    training_job_manifest,
)
from shared.events.inference import ServeSpec
from shared.events.signing import Keyring
from shared.events.training import JobModel, JobSpec
from shared.settings import Settings
from tests.unit.fakes import job_spec, serve_spec

K8S_VERSIONS = ["1.30.0", "1.33.0"]
SETTINGS = Settings(
    bootstrap_servers="kafka-0.kafka:9092,kafka-1.kafka:9092",
    database_url="postgresql://owner:owner-secret@postgres/kafkaml",
    api_database_url="postgresql://ro:ro-secret@postgres/kafkaml",
    api_token="the-api-token",
    topic_prefix="kafkaml",
    trainer_memory_mb=4096,
)
GPU = KubernetesSettings(
    namespace="ml",
    gpu_runtime_class="nvidia",
    gpu_node_selector={"nvidia.com/gpu.present": "true"},
    image_pull_secret="registry",
    priority_class="batch-low",
)


def job(gpus: int = 0, models: int = 1, job_id: str = "0b6f0d0a-3d47-4a5a-9a55-6f3b8c1e7a10") -> JobSpec:
    return job_spec(
        job_id,
        framework="pytorch",
        gpus=gpus,
        deployment_id=12,
        models=[
            JobModel(result_id=100 + i, model_id=i, name=f"m{i}", code="model = 1" * 50, upper_model_id=None)
            for i in range(models)
        ],
        batch_size=64,
        fit={"epochs": 10},
        confusion_matrix=False,
    )


def serve(gpus: int = 0, replicas: int = 4) -> ServeSpec:
    return serve_spec(
        "inference-31-3f2a",
        inference_id=31,
        result_id=100,
        code="model = keras.Sequential()",
        artifact_sha256="f" * 64,
        input_format="AVRO",
        input_config={"data_scheme": "{}"},
        replicas=replicas,
        gpus=gpus,
        group_id="kafkaml-inference-31",
    )


CASES = {
    "training": lambda: training_job_manifest(job(), SETTINGS, KubernetesSettings(namespace="kafkaml")),
    "training-gpu-chain": lambda: training_job_manifest(job(gpus=2, models=3), SETTINGS, GPU),
    "training-odd-id": lambda: training_job_manifest(job(job_id="Job_ID with spaces/and/" + "x" * 80), SETTINGS),
    "inference": lambda: inference_deployment_manifest(serve(), SETTINGS, KubernetesSettings(namespace="kafkaml")),
    "inference-gpu": lambda: inference_deployment_manifest(serve(gpus=1, replicas=2), SETTINGS, GPU),
}


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_validate_against_the_kubernetes_schemas(case: str, version: str) -> None:
    kubernetes_validate.validate(CASES[case](), version, strict=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_workers_get_kafka_settings_and_their_job_id_but_no_credentials(case: str) -> None:
    manifest = CASES[case]()
    text = json.dumps(manifest)
    for secret in ("owner-secret", "ro-secret", "the-api-token", "postgresql://"):
        assert secret not in text
    spec = pod(manifest)
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["serviceAccountName"] == "kafkaml-worker"
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KAFKAML_BOOTSTRAP_SERVERS"] == SETTINGS.bootstrap_servers
    assert env["KAFKAML_TOPIC_PREFIX"] == "kafkaml"
    assert "KAFKAML_JOB_ID" in env
    assert not [k for k in env if any(w in k for w in ("DATABASE", "TOKEN", "PASSWORD", "SECRET", "KUBERNETES"))]


@pytest.mark.parametrize("case", sorted(CASES))
def test_pods_are_restricted_with_resources(case: str) -> None:
    spec = pod(CASES[case]())
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_a_training_job_is_a_job_with_limits_deadline_ttl_and_ids() -> None:
    manifest = training_job_manifest(job(), SETTINGS, KubernetesSettings(namespace="kafkaml"))
    assert manifest["kind"] == "Job"
    spec = manifest["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 86_400
    assert spec["ttlSecondsAfterFinished"] == 3_600
    assert pod(manifest)["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    labels = manifest["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "kafkaml"
    assert labels["kafkaml.io/job-id"] == "0b6f0d0a-3d47-4a5a-9a55-6f3b8c1e7a10"
    assert labels["kafkaml.io/deployment-id"] == "12"
    assert labels["kafkaml.io/result-id"] == "100"
    assert spec["template"]["metadata"]["labels"]["kafkaml.io/network"] == "kafka-only"
    container = pod(manifest)["containers"][0]
    assert container["command"] == ["python", "-m", "services.trainer"]
    assert container["args"] == [
        *["--spec-file", "/var/run/kafkaml/spec/spec.json"],
        *["--job-id", "0b6f0d0a-3d47-4a5a-9a55-6f3b8c1e7a10"],
    ]
    assert container["image"] == "kafkaml-pytorch:0.1.0"
    assert container["resources"]["limits"]["memory"] == "4096Mi"  # KAFKAML_TRAINER_MEMORY_MB
    # The spec travels without the model code (it is on the jobs topic).
    annotation = json.loads(manifest["metadata"]["annotations"]["kafkaml.io/spec"])
    assert annotation["models"][0]["code"] == ""


def test_a_chain_has_no_single_result_label_but_all_its_results_annotated() -> None:
    manifest = training_job_manifest(job(models=3), SETTINGS)
    assert "kafkaml.io/result-id" not in manifest["metadata"]["labels"]
    assert manifest["metadata"]["annotations"]["kafkaml.io/result-ids"] == "100,101,102"


def test_gpus_are_requested_with_runtime_class_node_selector_and_toleration() -> None:
    manifest = training_job_manifest(job(gpus=2), SETTINGS, GPU)
    spec = pod(manifest)
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert container["image"] == "kafkaml-pytorch-gpu:0.1.0"
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    cpu = pod(training_job_manifest(job(), SETTINGS, GPU))
    assert "runtimeClassName" not in cpu and "nodeSelector" not in cpu and "tolerations" not in cpu


def test_an_inference_is_a_deployment_with_replicas_and_a_last_message_liveness() -> None:
    k8s = KubernetesSettings(namespace="kafkaml")
    manifest = inference_deployment_manifest(serve(replicas=4), SETTINGS, k8s)
    assert manifest["kind"] == "Deployment"
    assert manifest["spec"]["replicas"] == 4
    labels = manifest["metadata"]["labels"]
    assert labels["kafkaml.io/inference-id"] == "31"
    assert labels["kafkaml.io/result-id"] == "100"
    assert (
        manifest["spec"]["selector"]["matchLabels"].items()
        <= manifest["spec"]["template"]["metadata"]["labels"].items()
    )
    container = pod(manifest)["containers"][0]
    assert container["command"] == ["python", "-m", "services.inferencer"]
    assert container["args"] == [
        *["--spec-file", "/var/run/kafkaml/spec/spec.json"],
        *["--job-id", "inference-31-3f2a", "--replica", "$(KAFKAML_REPLICA)"],
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["KAFKAML_REPLICA"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["KAFKAML_ALIVE_FILE"]["value"] == "/tmp/kafkaml-alive"
    # Liveness is "a message was processed (or polled) lately", not "the process exists".
    assert container["livenessProbe"]["exec"]["command"] == alive_probe_command(k8s)
    assert container["startupProbe"]["exec"]["command"] == alive_probe_command(k8s)
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 600


def test_the_alive_probe_checks_the_file_age(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess
    import sys
    import time

    k8s = KubernetesSettings(alive_max_age_s=60)
    command = alive_probe_command(k8s)
    alive = tmp_path / "alive"
    env = {**os.environ, "KAFKAML_ALIVE_FILE": str(alive)}
    run = [sys.executable, *command[1:]]
    assert subprocess.run(run, env=env, capture_output=True).returncode != 0  # not there yet
    alive.touch()
    assert subprocess.run(run, env=env).returncode == 0
    old = time.time() - 120
    os.utime(alive, (old, old))
    assert subprocess.run(run, env=env).returncode == 1  # stale: nothing processed for two minutes


def test_names_and_label_values_are_always_valid() -> None:
    import re

    for job_id in ("0b6f0d0a-3d47-4a5a-9a55-6f3b8c1e7a10", "A_B", "x" * 200, "-weird-", "ünïcode"):
        name = object_name("kafkaml-train", job_id)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 52, name
        value = label_value(job_id)
        assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", value) and len(value) <= 63, value
    assert object_name("kafkaml-train", "x" * 200) != object_name("kafkaml-train", "x" * 199)


def test_failure_reasons_are_readable() -> None:
    oom = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "trainer", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
            ],
        },
    }
    assert "OOMKilled" in (describe_pod_problem(oom, "trainer") or "")
    unschedulable = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes: gpu"}
            ],
        },
    }
    assert "cannot be scheduled: 0/3 nodes: gpu" in (describe_pod_problem(unschedulable, "trainer") or "")
    assert describe_pod_problem({"metadata": {"name": "p"}, "status": {"phase": "Running"}}, "trainer") is None
    deadline = {
        "metadata": {"name": "j"},
        "spec": {"activeDeadlineSeconds": 60},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]},
    }
    text = describe_job_failure(deadline, "pod p cannot be scheduled: 0/3 nodes: gpu")
    assert "deadline of 60 s" in text and "cannot be scheduled" in text


def test_a_workload_manifest_does_not_carry_the_jobs_signing_key() -> None:
    key = Keyring(["manifest-bus-key"]).signing_key("job:x:results:100")
    for manifest in (
        training_job_manifest(job().model_copy(update={"signing_key": key}), SETTINGS, KubernetesSettings()),
        inference_deployment_manifest(serve().model_copy(update={"signing_key": key}), SETTINGS, KubernetesSettings()),
    ):
        assert key.key not in json.dumps(manifest)
