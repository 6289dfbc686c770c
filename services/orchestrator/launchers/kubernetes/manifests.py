"""The manifests the launcher sends: a Job per training, a Deployment per inference.

Pure functions of the spec and the settings, so that tests validate exactly what is sent.

- A training is a ``batch/v1`` Job running ``python -m services.trainer --job-id ID`` once
  (no restart, a backoff limit, a deadline, a TTL, GPUs as ``nvidia.com/gpu``).
- An inference is an ``apps/v1`` Deployment of ``replicas`` pods in one consumer group; a
  replica is alive while it touches ``$KAFKAML_ALIVE_FILE`` (after each batch and idle poll),
  which an exec probe checks.
- A worker's spec is a ``v1`` Secret (``spec.json``) mounted read-only into its pod, readable
  by the pod's user alone, owned by its Job or Deployment (deleted with it): the spec carries
  the job's secrets, so it travels on no topic and sits in no annotation.
- Worker pods get the workers' environment (``shared.workerenv``) and their job id, no
  Kubernetes token, and run non-root with a read-only root file system, every capability
  dropped and the runtime's seccomp profile (the ``restricted`` Pod Security Standard).
"""

from __future__ import annotations

from typing import Any

from services.orchestrator.launchers.kubernetes.labels import (
    COMPONENT,
    DEPLOYMENT_ID,
    INFERENCE_ID,
    INFERENCER,
    INSTANCE,
    JOB_ID,
    KAFKA_ONLY,
    NETWORK,
    RESULT_ID,
    RESULT_IDS,
    SPEC,
    TRAINER,
    Manifest,
    inference_name,
    spec_annotation,
    training_name,
    workload_labels,
)
from services.orchestrator.launchers.kubernetes.settings import KubernetesSettings
from shared.alive import probe_command
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings
from shared.workerenv import worker_environment, worker_has_own_login

# Where a worker's spec Secret is mounted, and the file its launcher names.
SPEC_DIR = "/var/run/kafkaml/spec"
SPEC_FILE = "spec.json"
SPEC_PATH = f"{SPEC_DIR}/{SPEC_FILE}"
# Owner and group read only: a Secret volume's files belong to root and the pod's fsGroup.
SPEC_FILE_MODE = 0o440

# --- pod template pieces ------------------------------------------------------------------------


def _env(settings: Settings, k8s: KubernetesSettings, job_id: str, *extra: Manifest) -> list[dict[str, Any]]:
    """A worker's environment: the workers' settings, its job id, then ``extra`` entries."""
    values = worker_environment(settings, base={})
    values.update(
        KAFKAML_JOB_ID=job_id,
        HOME="/tmp",
        MPLCONFIGDIR="/tmp/matplotlib",
        KERAS_HOME="/tmp/keras",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env: list[dict[str, Any]] = [{"name": key, "value": values[key]} for key in sorted(values) if key != _PASSWORD]
    # With a login of their own, workers need its password even where the orchestrator does not hold it.
    own_login = worker_has_own_login(settings) and settings.security_protocol.startswith("SASL")
    if _PASSWORD in values or own_login:
        # The password comes from a Secret the pod references, never as a value in the pod's spec.
        check_kafka_secret(settings, k8s)
        key = "worker-sasl-password" if worker_has_own_login(settings) else "sasl-password"
        env.append({"name": _PASSWORD, "valueFrom": {"secretKeyRef": {"name": k8s.kafka_secret, "key": key}}})
    return [*env, *extra]


_PASSWORD = "KAFKAML_SASL_PASSWORD"
_KAFKA_TLS = "kafka-tls"


def check_kafka_secret(settings: Settings, k8s: KubernetesSettings) -> None:
    """A Kafka password needs the Secret that worker pods read it from (KAFKAML_K8S_KAFKA_SECRET)."""
    if (settings.sasl_password is not None or worker_has_own_login(settings)) and not k8s.kafka_secret:
        raise ValueError(
            "KAFKAML_SASL_PASSWORD is set: name the Secret that holds it (key sasl-password, and "
            "worker-sasl-password for KAFKAML_WORKER_SASL_USERNAME) in KAFKAML_K8S_KAFKA_SECRET, so that "
            "worker pods read it from there, never from their spec"
        )


def _tls_mount(k8s: KubernetesSettings) -> list[Manifest]:
    return [{"name": _KAFKA_TLS, "mountPath": k8s.kafka_tls_mount, "readOnly": True}] if k8s.kafka_tls_secret else []


def _security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _image(framework: str, gpus: int, k8s: KubernetesSettings) -> str:
    if framework == "pytorch":
        return k8s.gpu_image_pytorch if gpus else k8s.image_pytorch
    return k8s.gpu_image_tensorflow if gpus else k8s.image_tensorflow


def _resources(cpu: tuple[str, str], memory: tuple[str, str], gpus: int, k8s: KubernetesSettings) -> Manifest:
    requests: dict[str, str] = {"cpu": cpu[0], "memory": memory[0]}
    limits: dict[str, str] = {"cpu": cpu[1], "memory": memory[1]}
    if gpus:
        # Extended resources: the request is the limit.
        requests[k8s.gpu_resource] = str(gpus)
        limits[k8s.gpu_resource] = str(gpus)
    return {"requests": requests, "limits": limits}


def _pod_spec(
    container: Manifest, *, gpus: int, k8s: KubernetesSettings, restart_policy: str, grace_s: int, secret_name: str
) -> Manifest:
    pod: Manifest = {
        "serviceAccountName": k8s.service_account,
        # No Kubernetes token in a pod that runs users' code.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": grace_s,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": k8s.run_as_user,
            "runAsGroup": k8s.run_as_user,
            "fsGroup": k8s.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": k8s.tmp_size_limit}},
            {"name": "spec", "secret": {"secretName": secret_name, "defaultMode": SPEC_FILE_MODE}},
        ],
    }
    if k8s.kafka_tls_secret:
        pod["volumes"].append({"name": _KAFKA_TLS, "secret": {"secretName": k8s.kafka_tls_secret, "optional": True}})
    if k8s.image_pull_secret:
        pod["imagePullSecrets"] = [{"name": k8s.image_pull_secret}]
    if k8s.priority_class:
        pod["priorityClassName"] = k8s.priority_class
    if gpus:
        if k8s.gpu_runtime_class:
            pod["runtimeClassName"] = k8s.gpu_runtime_class
        if k8s.gpu_node_selector:
            pod["nodeSelector"] = dict(k8s.gpu_node_selector)
        pod["tolerations"] = [{"key": k8s.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
    return pod


def _container(name: str, image: str, args: list[str], env: list[dict[str, Any]], k8s: KubernetesSettings) -> Manifest:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": k8s.image_pull_policy,
        "command": ["python", "-m", f"services.{name}"],
        "args": args,
        "env": env,
        "securityContext": _security_context(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
            *_tls_mount(k8s),
        ],
        # A crash's last log lines become the termination message, and so part of the failure reason.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _metadata(k8s: KubernetesSettings, **fields: Any) -> Manifest:
    """A manifest's metadata: ``fields``, in the launcher's namespace when it names one."""
    return {**fields, "namespace": k8s.namespace} if k8s.namespace else dict(fields)


def alive_probe_command(k8s: KubernetesSettings) -> list[str]:
    """Exits 0 while the alive file was touched within ``alive_max_age_s``."""
    return probe_command(k8s.alive_file, k8s.alive_max_age_s)


# --- manifests ----------------------------------------------------------------------------------


def training_job_manifest(spec: JobSpec, settings: Settings, k8s: KubernetesSettings | None = None) -> Manifest:
    """The Job that runs ``spec``'s trainer."""
    k8s = k8s or KubernetesSettings()
    single = spec.models[0].result_id if len(spec.models) == 1 else None
    labels = workload_labels(settings, TRAINER, spec.job_id, **{DEPLOYMENT_ID: spec.deployment_id, RESULT_ID: single})
    annotations = {
        JOB_ID: spec.job_id,
        RESULT_IDS: ",".join(str(m.result_id) for m in spec.models),
        SPEC: spec_annotation(spec),
    }
    memory_limit = k8s.trainer_memory_limit or f"{settings.trainer_memory_mb}Mi"
    container = _container(
        TRAINER,
        _image(spec.framework, spec.gpus, k8s),
        ["--spec-file", SPEC_PATH, "--job-id", spec.job_id],
        _env(settings, k8s, spec.job_id),
        k8s,
    )
    container["resources"] = _resources(
        (k8s.trainer_cpu_request, k8s.trainer_cpu_limit), (k8s.trainer_memory_request, memory_limit), spec.gpus, k8s
    )
    rules: list[Manifest] = []
    if k8s.retry_disrupted_pods:
        rules.append({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})
    # Exit 1 (outcome not publishable) and 2 (no such job spec) are the trainer's own verdicts: no retry.
    rules.append({"action": "FailJob", "onExitCodes": {"containerName": TRAINER, "operator": "In", "values": [1, 2]}})
    metadata = _metadata(k8s, name=training_name(spec.job_id), labels=labels, annotations=annotations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": k8s.backoff_limit,
            "activeDeadlineSeconds": k8s.trainer_deadline_s,
            "ttlSecondsAfterFinished": k8s.ttl_after_finished_s,
            "podFailurePolicy": {"rules": rules},
            "template": {
                "metadata": {"labels": {**labels, NETWORK: KAFKA_ONLY}, "annotations": {JOB_ID: spec.job_id}},
                "spec": _pod_spec(
                    container,
                    gpus=spec.gpus,
                    k8s=k8s,
                    restart_policy="Never",
                    grace_s=30,
                    secret_name=training_name(spec.job_id),
                ),
            },
        },
    }


def inference_deployment_manifest(
    spec: ServeSpec, settings: Settings, k8s: KubernetesSettings | None = None
) -> Manifest:
    """The Deployment that serves ``spec`` with ``spec.replicas`` pods in one consumer group."""
    k8s = k8s or KubernetesSettings()
    labels = workload_labels(
        settings, INFERENCER, spec.job_id, **{INFERENCE_ID: spec.inference_id, RESULT_ID: spec.result_id}
    )
    env = _env(
        settings,
        k8s,
        spec.job_id,
        {"name": "KAFKAML_ALIVE_FILE", "value": k8s.alive_file},
        # The replica's name is its pod's name (a Deployment's pods have no index).
        {"name": "KAFKAML_REPLICA", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    )
    container = _container(
        INFERENCER,
        _image(spec.framework, spec.gpus, k8s),
        ["--spec-file", SPEC_PATH, "--job-id", spec.job_id, "--replica", "$(KAFKAML_REPLICA)"],
        env,
        k8s,
    )
    container["resources"] = _resources(
        (k8s.inferencer_cpu_request, k8s.inferencer_cpu_limit),
        (k8s.inferencer_memory_request, k8s.inferencer_memory_limit),
        spec.gpus,
        k8s,
    )
    probe = {"exec": {"command": alive_probe_command(k8s)}, "timeoutSeconds": 5}
    period = 10
    container["startupProbe"] = {
        **probe,
        "periodSeconds": period,
        "failureThreshold": max(1, k8s.startup_timeout_s // period),
    }
    container["livenessProbe"] = {**probe, "periodSeconds": 20, "failureThreshold": 3}
    selector_labels = {COMPONENT: INFERENCER, INSTANCE: labels[INSTANCE], JOB_ID: labels[JOB_ID]}
    metadata = _metadata(
        k8s,
        name=inference_name(spec.job_id),
        labels=labels,
        annotations={JOB_ID: spec.job_id, SPEC: spec_annotation(spec)},
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels},
            "progressDeadlineSeconds": k8s.progress_deadline_s,
            "revisionHistoryLimit": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {**labels, NETWORK: KAFKA_ONLY}, "annotations": {JOB_ID: spec.job_id}},
                "spec": _pod_spec(
                    container,
                    gpus=spec.gpus,
                    k8s=k8s,
                    restart_policy="Always",
                    grace_s=30,
                    secret_name=inference_name(spec.job_id),
                ),
            },
        },
    }


def spec_secret_manifest(spec: JobSpec | ServeSpec, owner: Manifest, k8s: KubernetesSettings | None = None) -> Manifest:
    """The Secret holding ``spec`` for the pods of ``owner`` (the Job or Deployment just created,
    named like it): owned by it, so Kubernetes deletes it with its workload."""
    k8s = k8s or KubernetesSettings()
    meta = owner.get("metadata") or {}
    reference = {
        "apiVersion": owner.get("apiVersion", "batch/v1" if isinstance(spec, JobSpec) else "apps/v1"),
        "kind": owner.get("kind", "Job" if isinstance(spec, JobSpec) else "Deployment"),
        "name": meta["name"],
        "uid": meta["uid"],
    }
    metadata = _metadata(
        k8s,
        name=meta["name"],
        labels=dict(meta.get("labels") or {}),
        annotations={JOB_ID: spec.job_id},
        ownerReferences=[reference],
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "immutable": True,
        "stringData": {SPEC_FILE: spec.model_dump_json()},
    }
