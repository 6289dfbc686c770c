"""The Kubernetes launcher: training jobs as Jobs, inferences as Deployments.

Chosen with ``KAFKAML_LAUNCHER=kubernetes``; configured by :class:`KubernetesSettings`
(``KAFKAML_K8S_*``). The manifests come from two pure functions,
:func:`training_job_manifest` and :func:`inference_deployment_manifest`, so that
tests validate exactly what is sent.

What runs where:

- A training job is a ``batch/v1`` Job running ``python -m services.trainer
  --job-id ID`` once (``restartPolicy: Never``, a backoff limit, an active
  deadline, a TTL after it finishes, requests and limits, GPUs as
  ``nvidia.com/gpu``). The trainer reports its own outcome through Kafka; the
  launcher reports only what the trainer cannot: a Job that failed (killed for
  memory, evicted, past its deadline, crashed, deleted by someone else, an image
  that cannot be pulled), through the ``OnFailure`` callback, with a reason a
  user can act on.
- An inference is an ``apps/v1`` Deployment of ``replicas`` pods running
  ``python -m services.inferencer --job-id ID --replica POD_NAME`` in one
  consumer group. Its liveness is "a message was processed (or the consumer
  polled) within the last ``alive_max_age_s`` seconds": the inferencer touches
  ``$KAFKAML_ALIVE_FILE`` after each batch and each idle poll, and an exec
  probe (a Python one-liner, no shell or findutils needed) checks the file's age.
- Worker pods get the Kafka settings and their job id, nothing else: no
  database URL, no API token, and no Kubernetes token
  (``automountServiceAccountToken: false``). They run as a non-root user with a
  read-only root file system, every capability dropped and the runtime's
  seccomp profile, which the ``restricted`` Pod Security Standard accepts.
- Every object carries ``app.kubernetes.io/part-of: kafkaml``, the
  ``kafkaml.io/instance`` of the orchestrator that owns it (its topic prefix,
  so stacks can share a namespace) and its ids (``kafkaml.io/job-id``,
  ``kafkaml.io/deployment-id`` or ``kafkaml.io/inference-id``, and
  ``kafkaml.io/result-id`` where there is one). The exact job id and the spec
  (without the model code) are kept in annotations, so that an orchestrator
  that restarts adopts what runs.

Watching: one loop per kind (Jobs, Deployments, Pods) lists, then watches from
the list's ``resourceVersion`` and resumes from the last version it saw after a
disconnect or a server-side timeout; a ``410 Gone`` (the version was
compacted away) makes it list again and treat what vanished meanwhile as
deleted. Bookmarks keep the version fresh on quiet namespaces.

Stopping deletes the object with ``propagationPolicy: Foreground`` (its pods go
first); nothing is reported for a stopped job. :meth:`KubernetesLauncher.reconcile`
deletes what runs but the database no longer wants.

RBAC: the launcher needs ``create, delete, list, watch`` on ``batch/jobs`` and
``apps/deployments`` and ``list, watch`` on ``pods`` in its namespace, nothing
more (``deploy/k8s/base/rbac.yaml``; the contract test checks every call it
makes against that Role).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.orchestrator.launchers.base import OnFailure, worker_env
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings

log = logging.getLogger("kafkaml.launcher.kubernetes")

Manifest = dict[str, Any]
Kind = Literal["job", "deployment", "pod"]

PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "kafkaml.io/instance"
JOB_ID = "kafkaml.io/job-id"
DEPLOYMENT_ID = "kafkaml.io/deployment-id"
INFERENCE_ID = "kafkaml.io/inference-id"
RESULT_ID = "kafkaml.io/result-id"
RESULT_IDS = "kafkaml.io/result-ids"
SPEC = "kafkaml.io/spec"
# Pods with this label may reach Kafka (and DNS) only: deploy/k8s/base/networkpolicy.yaml.
NETWORK = "kafkaml.io/network"
KAFKA_ONLY = "kafka-only"
MANAGER = "kafkaml-orchestrator"

TRAINER = "trainer"
INFERENCER = "inferencer"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# Container states that will not get better by waiting: fail the workload now, with the reason.
FATAL_WAITING = frozenset(
    {"ErrImageNeverPull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)


class KubernetesSettings(BaseSettings):
    """How workloads run on Kubernetes (``KAFKAML_K8S_*``)."""

    model_config = SettingsConfigDict(env_prefix="KAFKAML_K8S_", extra="ignore")

    # Where the API is: in-cluster (the pod's service account), a kubeconfig, or auto (in-cluster when in a pod).
    config: Literal["auto", "incluster", "kubeconfig"] = "auto"
    kubeconfig: str | None = None
    context: str | None = None
    # Default: the pod's own namespace in a cluster, "default" outside one.
    namespace: str | None = None

    # Images (pin them by tag or digest); the framework picks one, a GPU request picks the GPU build.
    image_tensorflow: str = "kafkaml-tensorflow:0.1.0"
    image_pytorch: str = "kafkaml-pytorch:0.1.0"
    gpu_image_tensorflow: str = "kafkaml-tensorflow-gpu:0.1.0"
    gpu_image_pytorch: str = "kafkaml-pytorch-gpu:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secret: str | None = None
    # The workers' service account: no Role bound, no token mounted.
    service_account: str = "kafkaml-worker"
    priority_class: str | None = None
    run_as_user: int = 10001

    # Training Jobs.
    trainer_cpu_request: str = "1"
    trainer_cpu_limit: str = "4"
    trainer_memory_request: str = "2Gi"
    # Default: KAFKAML_TRAINER_MEMORY_MB (the limit the local launcher enforces too).
    trainer_memory_limit: str | None = None
    backoff_limit: int = Field(default=0, ge=0)
    # Pods evicted or preempted (node drain, node pressure) are retried without counting against the backoff limit.
    retry_disrupted_pods: bool = True
    trainer_deadline_s: int = Field(default=86_400, ge=60)
    ttl_after_finished_s: int = Field(default=3_600, ge=0)

    # Inference Deployments.
    inferencer_cpu_request: str = "500m"
    inferencer_cpu_limit: str = "2"
    inferencer_memory_request: str = "1Gi"
    inferencer_memory_limit: str = "4Gi"
    alive_file: str = "/tmp/kafkaml-alive"
    alive_max_age_s: int = Field(default=60, ge=5)
    # How long a replica may take to load its model and join its group before it counts as started.
    startup_timeout_s: int = Field(default=600, ge=30)
    progress_deadline_s: int = Field(default=900, ge=60)

    # Scratch space (/tmp) of every worker: the root file system is read-only.
    tmp_size_limit: str = "2Gi"

    # GPUs.
    gpu_resource: str = "nvidia.com/gpu"
    gpu_runtime_class: str | None = None
    gpu_node_selector: dict[str, str] = Field(default_factory=dict)

    # Watching.
    watch_timeout_s: int = Field(default=300, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)


# --- names and labels ---------------------------------------------------------------------------

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def label_value(value: str | int) -> str:
    """``value`` as a valid label value (63 characters, alphanumeric ends); a digest where it is not."""
    text = str(value)
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:50].strip("-_.")
    return f"{cleaned}-{_digest(text)}" if cleaned else _digest(text, 16)


def object_name(prefix: str, job_id: str) -> str:
    """A DNS-1123 label for a workload: ``prefix-jobid``, shortened with a digest when needed."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", job_id.lower()).strip("-")
    name = f"{prefix}-{cleaned}"
    if cleaned == job_id and len(name) <= 52:
        return name
    # Room for the pod suffixes Jobs and ReplicaSets add.
    return f"{prefix}-{cleaned[: 52 - len(prefix) - 10].strip('-')}-{_digest(job_id)}".replace("--", "-")


def training_name(job_id: str) -> str:
    return object_name("kafkaml-train", job_id)


def inference_name(job_id: str) -> str:
    return object_name("kafkaml-infer", job_id)


def instance_of(settings: Settings) -> str:
    return label_value(settings.topic_prefix)


def selector(settings: Settings) -> str:
    """The label selector of every workload this orchestrator owns."""
    return f"{PART_OF}=kafkaml,{MANAGED_BY}={MANAGER},{INSTANCE}={instance_of(settings)}"


def _labels(settings: Settings, component: str, job_id: str, **ids: int | None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": f"kafkaml-{component}",
        PART_OF: "kafkaml",
        COMPONENT: component,
        MANAGED_BY: MANAGER,
        INSTANCE: instance_of(settings),
        JOB_ID: label_value(job_id),
    }
    for key, value in ids.items():
        if value is not None:
            labels[key] = label_value(value)
    return labels


def _spec_annotation(spec: JobSpec | ServeSpec) -> str:
    """The spec without the model code: enough to adopt the workload and report on it."""
    data = spec.model_dump(mode="json")
    if isinstance(spec, JobSpec):
        for model in data["models"]:
            model["code"] = ""
            model["imports"] = ""
    else:
        data["code"] = ""
        data["imports"] = ""
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


# --- pod template pieces ------------------------------------------------------------------------


def _env(settings: Settings, k8s: KubernetesSettings, job_id: str) -> list[dict[str, Any]]:
    values = worker_env(settings, base={})
    values.update(
        KAFKAML_JOB_ID=job_id,
        HOME="/tmp",
        MPLCONFIGDIR="/tmp/matplotlib",
        KERAS_HOME="/tmp/keras",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return [{"name": key, "value": values[key]} for key in sorted(values)]


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
    container: Manifest, *, gpus: int, k8s: KubernetesSettings, restart_policy: str, grace_s: int
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
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": k8s.tmp_size_limit}}],
    }
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
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        # A crash's last log lines become the termination message, and so part of the failure reason.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def alive_probe_command(k8s: KubernetesSettings) -> list[str]:
    """Exits 0 while the alive file was touched within ``alive_max_age_s`` (a Python one-liner)."""
    code = (
        "import os,sys,time;"
        f"p=os.environ.get('KAFKAML_ALIVE_FILE','{k8s.alive_file}');"
        f"sys.exit(0 if time.time()-os.stat(p).st_mtime<{k8s.alive_max_age_s} else 1)"
    )
    return ["python", "-c", code]


# --- manifests ------------------------------------------------------------------------------------


def training_job_manifest(spec: JobSpec, settings: Settings, k8s: KubernetesSettings | None = None) -> Manifest:
    """The Job that runs ``spec``'s trainer."""
    k8s = k8s or KubernetesSettings()
    single = spec.models[0].result_id if len(spec.models) == 1 else None
    labels = _labels(settings, TRAINER, spec.job_id, **{DEPLOYMENT_ID: spec.deployment_id, RESULT_ID: single})
    annotations = {
        JOB_ID: spec.job_id,
        RESULT_IDS: ",".join(str(m.result_id) for m in spec.models),
        SPEC: _spec_annotation(spec),
    }
    memory_limit = k8s.trainer_memory_limit or f"{settings.trainer_memory_mb}Mi"
    container = _container(
        TRAINER,
        _image(spec.framework, spec.gpus, k8s),
        ["--job-id", spec.job_id],
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
    metadata: Manifest = {"name": training_name(spec.job_id), "labels": labels, "annotations": annotations}
    if k8s.namespace:
        metadata["namespace"] = k8s.namespace
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
                "spec": _pod_spec(container, gpus=spec.gpus, k8s=k8s, restart_policy="Never", grace_s=30),
            },
        },
    }


def inference_deployment_manifest(
    spec: ServeSpec, settings: Settings, k8s: KubernetesSettings | None = None
) -> Manifest:
    """The Deployment that serves ``spec`` with ``spec.replicas`` pods in one consumer group."""
    k8s = k8s or KubernetesSettings()
    labels = _labels(settings, INFERENCER, spec.job_id, **{INFERENCE_ID: spec.inference_id, RESULT_ID: spec.result_id})
    env = _env(settings, k8s, spec.job_id)
    env.append({"name": "KAFKAML_ALIVE_FILE", "value": k8s.alive_file})
    # The replica's name is its pod's name (a Deployment's pods have no index).
    env.append({"name": "KAFKAML_REPLICA", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    container = _container(
        INFERENCER,
        _image(spec.framework, spec.gpus, k8s),
        ["--job-id", spec.job_id, "--replica", "$(KAFKAML_REPLICA)"],
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
    metadata: Manifest = {
        "name": inference_name(spec.job_id),
        "labels": labels,
        "annotations": {JOB_ID: spec.job_id, SPEC: _spec_annotation(spec)},
    }
    if k8s.namespace:
        metadata["namespace"] = k8s.namespace
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
                "spec": _pod_spec(container, gpus=spec.gpus, k8s=k8s, restart_policy="Always", grace_s=30),
            },
        },
    }


# --- reading objects back ---------------------------------------------------------------------


def _meta(obj: Manifest) -> Manifest:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _job_id_of(obj: Manifest) -> str | None:
    meta = _meta(obj)
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    value = annotations.get(JOB_ID) or labels.get(JOB_ID)
    return str(value) if value else None


def _condition(obj: Manifest, kind: str) -> Manifest | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _tail(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def describe_pod_problem(pod: Manifest, container_name: str) -> str | None:
    """What went wrong with ``pod``, in words a user can act on; ``None`` when nothing did."""
    name = _meta(pod).get("name", "?")
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return f"pod {name} was evicted: {status.get('message') or 'the node ran short of resources'}"
    for container in status.get("containerStatuses") or []:
        if container.get("name") != container_name:
            continue
        state = container.get("state") or {}
        last = container.get("lastState") or {}
        terminated = state.get("terminated") or last.get("terminated")
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FATAL_WAITING:
            detail = waiting.get("message") or ""
            text = f"the {container_name} container of pod {name} cannot start: {reason}"
            return f"{text}: {detail}" if detail else text
        if terminated and terminated.get("exitCode", 0) != 0:
            code = terminated.get("exitCode")
            if terminated.get("reason") == "OOMKilled":
                return (
                    f"the {container_name} in pod {name} was OOMKilled (exit code {code}): it needed more memory "
                    "than its limit; use a smaller batch size or model, or raise the memory limit "
                    "(KAFKAML_TRAINER_MEMORY_MB or KAFKAML_K8S_*_MEMORY_LIMIT)"
                )
            message = terminated.get("message") or ""
            how = (
                f"was killed by signal {code - 128}"
                if isinstance(code, int) and code > 128
                else f"exited with code {code}"
            )
            text = f"the {container_name} in pod {name} {how}"
            if terminated.get("reason") and terminated.get("reason") not in ("Error", "Completed"):
                text += f" ({terminated['reason']})"
            return f"{text}: {_tail(message)}" if message.strip() else text
        if reason == "CrashLoopBackOff":
            return f"the {container_name} in pod {name} keeps crashing: {waiting.get('message', '')}".rstrip(": ")
    if status.get("phase") == "Pending":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return f"pod {name} cannot be scheduled: {condition.get('message', '')}".rstrip(": ")
    if status.get("phase") == "Failed":
        return f"pod {name} failed: {status.get('reason') or ''} {status.get('message') or ''}".strip()
    return None


def describe_job_failure(job: Manifest, note: str | None) -> str:
    """Why a Job failed: its condition, with the last pod problem seen."""
    failed = _condition(job, "Failed") or {}
    reason = failed.get("reason") or "Failed"
    message = failed.get("message") or ""
    name = _meta(job).get("name", "?")
    if reason == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        text = (
            f"the training ran past its deadline of {deadline} s and was stopped (Job {name}); "
            "raise KAFKAML_K8S_TRAINER_DEADLINE_S for longer trainings"
        )
        return f"{text}; last seen: {note}" if note else text
    if note:
        return note
    return f"the trainer's Job {name} failed: {reason}" + (f": {message}" if message else "")


# --- the launcher ---------------------------------------------------------------------------------


class KubernetesApiError(RuntimeError):
    def __init__(self, status: int, reason: str, body: str = "") -> None:
        self.status = status
        self.reason = reason
        self.body = body
        try:
            detail = json.loads(body).get("message", "") if body else ""
        except (ValueError, AttributeError):
            detail = body[:200]
        super().__init__(f"Kubernetes API answered {status} {reason}" + (f": {detail}" if detail else ""))


class _Gone(Exception):
    """The resource version we resume from is too old: list again."""


@dataclass
class Workload:
    job_id: str
    kind: Literal["training", "inference"]
    name: str
    spec: JobSpec | ServeSpec
    state: Literal["running", "succeeded", "failed", "deleting"] = "running"
    stopping: bool = False
    reported: set[str] = field(default_factory=set)
    note: str | None = None
    # When this launcher learnt of it: a list that started earlier cannot have seen it.
    known_since: float = field(default_factory=time.monotonic)


class KubernetesLauncher:
    """The :class:`~services.orchestrator.launchers.base.Launcher` for Kubernetes."""

    def __init__(
        self,
        settings: Settings,
        on_failure: OnFailure,
        *,
        k8s: KubernetesSettings | None = None,
        api_client: Any = None,
    ) -> None:
        self.settings = settings
        self.on_failure = on_failure
        self.k8s = k8s or KubernetesSettings()
        self._client = api_client
        self._owns_client = api_client is None
        self.workloads: dict[str, Workload] = {}
        self.resource_versions: dict[Kind, str | None] = {"job": None, "deployment": None, "pod": None}
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closing = False
        self.namespace = self.k8s.namespace or ""
        self.selector = selector(settings)
        # Found while observing (synchronously), acted on by _flush.
        self._pending_reports: list[tuple[Workload, str]] = []
        self._pending_deleted: list[Workload] = []
        self._pending_deletes: list[Workload] = []
        self._pending_job_failures: list[tuple[Workload, Manifest]] = []

    # --- the Launcher interface ---

    async def launch_training(self, spec: JobSpec) -> None:
        await self._ensure_started()
        current = self.workloads.get(spec.job_id)
        if current is not None and current.state == "running" and not current.stopping:
            return
        manifest = training_job_manifest(spec, self.settings, self.k8s)
        await self._create("job", manifest, spec, "training")

    async def launch_inference(self, spec: ServeSpec) -> None:
        await self._ensure_started()
        current = self.workloads.get(spec.job_id)
        if current is not None and current.state == "running" and not current.stopping:
            return
        manifest = inference_deployment_manifest(spec, self.settings, self.k8s)
        await self._create("deployment", manifest, spec, "inference")

    async def stop(self, job_id: str) -> None:
        await self._ensure_started()
        workload = self.workloads.get(job_id)
        if workload is not None:
            workload.stopping = True
            kinds: list[Kind] = ["job" if workload.kind == "training" else "deployment"]
            names = {"job": workload.name, "deployment": workload.name}
        else:
            kinds = ["job", "deployment"]
            names = {"job": training_name(job_id), "deployment": inference_name(job_id)}
        for kind in kinds:
            deleted = await self._delete(kind, names[kind])
            if deleted:
                log.info("stopping %s: deleted %s %s (foreground propagation)", job_id, kind, names[kind])
        if workload is not None and workload.state == "running":
            workload.state = "deleting"

    async def running(self) -> set[str]:
        await self._ensure_started()
        return {job_id for job_id, w in self.workloads.items() if w.state == "running" and not w.stopping}

    async def reconcile(self, wanted: Iterable[str]) -> set[str]:
        """Deletes the running workloads whose job id is not in ``wanted`` (the database's
        in-flight jobs and inferences); returns the wanted ids that do not run."""
        wanted = set(wanted)
        running = await self.running()
        for job_id in sorted(running - wanted):
            log.info("reconcile: %s runs but is no longer wanted; deleting it", job_id)
            await self.stop(job_id)
        return wanted - running

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._owns_client and self._client is not None:
            await self._client.close()
            self._client = None

    # --- start-up ---

    async def _ensure_started(self) -> None:
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            if self._client is None:
                self._client = await self._load_client()
            if not self.namespace:
                self.namespace = self._default_namespace()
                self.k8s = self.k8s.model_copy(update={"namespace": self.namespace})
            from kubernetes_asyncio import client

            self._batch = client.BatchV1Api(self._client)
            self._apps = client.AppsV1Api(self._client)
            self._core = client.CoreV1Api(self._client)
            # Synchronously once, so that running() is right from the first call.
            for kind in ("job", "deployment", "pod"):
                await self._relist(kind)
            self._tasks = [
                asyncio.create_task(self._watch_forever(kind), name=f"k8s-watch-{kind}")
                for kind in ("job", "deployment", "pod")
            ]
            self._started = True
            log.info(
                "kubernetes launcher watching namespace %s (%s): %d workloads adopted",
                self.namespace,
                self.selector,
                len(self.workloads),
            )

    async def _load_client(self) -> Any:
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        in_cluster = self.k8s.config == "incluster" or (
            self.k8s.config == "auto" and not self.k8s.kubeconfig and "KUBERNETES_SERVICE_HOST" in os.environ
        )
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=self.k8s.kubeconfig, context=self.k8s.context, client_configuration=configuration
            )
        return client.ApiClient(configuration)

    @staticmethod
    def _default_namespace() -> str:
        with contextlib.suppress(OSError):
            value = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
            if value:
                return value
        return "default"

    # --- API calls (raw JSON: what is sent is what the manifest functions built) ---

    def _api(self, kind: Kind) -> tuple[Callable[..., Awaitable[Any]], ...]:
        if kind == "job":
            return (
                self._batch.list_namespaced_job,
                self._batch.create_namespaced_job,
                self._batch.delete_namespaced_job,
            )
        if kind == "deployment":
            return (
                self._apps.list_namespaced_deployment,
                self._apps.create_namespaced_deployment,
                self._apps.delete_namespaced_deployment,
            )
        return (self._core.list_namespaced_pod,)

    async def _call(self, func: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Manifest:
        response = await func(*args, _preload_content=False, _request_timeout=self.k8s.request_timeout_s, **kwargs)
        try:
            body = await response.read()
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise KubernetesApiError(response.status, response.reason or "", body.decode(errors="replace"))
        data = json.loads(body) if body else {}
        return data if isinstance(data, dict) else {}

    async def _create(
        self, kind: Kind, manifest: Manifest, spec: JobSpec | ServeSpec, what: Literal["training", "inference"]
    ) -> None:
        name = manifest["metadata"]["name"]
        try:
            created = await self._call(self._api(kind)[1], self.namespace, manifest)
        except KubernetesApiError as exc:
            if exc.status != 409:
                raise
            # A Job that finished or failed while we were away, or one being deleted: its outcome
            # is (being) reported; a new one with the same id is not what anyone wants.
            log.warning("%s %s exists already; not created again", kind, name)
            existing = self.workloads.get(spec.job_id)
            if existing is not None:
                existing.spec = spec
            return
        self.workloads[spec.job_id] = Workload(spec.job_id, what, name, spec)
        self._observe(kind, "ADDED", created)
        log.info("created %s %s for job %s", kind, name, spec.job_id)
        await self._flush()

    async def _delete(self, kind: Kind, name: str) -> bool:
        try:
            await self._call(self._api(kind)[2], name, self.namespace, propagation_policy="Foreground")
        except KubernetesApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- watching ---

    async def _relist(self, kind: Kind) -> None:
        started = time.monotonic()
        listed = await self._call(self._api(kind)[0], self.namespace, label_selector=self.selector)
        items = [item for item in listed.get("items") or [] if isinstance(item, dict)]
        seen: set[str] = set()
        for item in items:
            self._observe(kind, "ADDED", item)
            job_id = _job_id_of(item)
            if job_id:
                seen.add(job_id)
        if kind != "pod":
            # What vanished while we were not watching was deleted.
            mine = "training" if kind == "job" else "inference"
            for job_id, workload in list(self.workloads.items()):
                if workload.kind == mine and job_id not in seen and workload.known_since < started:
                    self._pending_deleted.append(workload)
        await self._flush()
        self.resource_versions[kind] = str((listed.get("metadata") or {}).get("resourceVersion") or "") or None

    async def _watch_forever(self, kind: Kind) -> None:
        delay = 1.0
        while not self._closing:
            try:
                if self.resource_versions[kind] is None:
                    await self._relist(kind)
                await self._watch_once(kind)
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except _Gone:
                log.info("watch of %ss: resource version %s expired; listing again", kind, self.resource_versions[kind])
                self.resource_versions[kind] = None
            except Exception as exc:
                log.warning(
                    "watch of %ss interrupted (%s: %s); resuming in %.0f s", kind, type(exc).__name__, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _watch_once(self, kind: Kind) -> None:
        """One watch request, from the last resource version until the server ends it."""
        response = await self._api(kind)[0](
            self.namespace,
            label_selector=self.selector,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=self.resource_versions[kind],
            timeout_seconds=self.k8s.watch_timeout_s,
            _preload_content=False,
            _request_timeout=self.k8s.watch_timeout_s + 30,
        )
        try:
            if response.status == 410:
                raise _Gone
            if not 200 <= response.status < 300:
                body = await response.read()
                raise KubernetesApiError(response.status, response.reason or "", body.decode(errors="replace"))
            while True:
                line = await response.content.readline()
                if not line:
                    return  # the server's timeout: resume from where we are
                if not line.strip():
                    continue
                event = json.loads(line)
                kind_of_event = event.get("type")
                obj = event.get("object") or {}
                if kind_of_event == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise KubernetesApiError(int(obj.get("code") or 500), str(obj.get("reason")), json.dumps(obj))
                version = _meta(obj).get("resourceVersion")
                if kind_of_event != "BOOKMARK":
                    self._observe(kind, kind_of_event, obj)
                    await self._flush()
                if version:
                    self.resource_versions[kind] = str(version)
        finally:
            response.release()

    # --- turning objects into state and reports ---

    def _observe(self, kind: Kind, event: str, obj: Manifest) -> None:
        """Updates the state from one object; reports are queued and sent by :meth:`_flush`."""
        job_id = _job_id_of(obj)
        if job_id is None:
            return
        if kind == "pod":
            self._observe_pod(job_id, event, obj)
            return
        workload = self.workloads.get(job_id)
        if workload is None:
            workload = self._adopt(kind, job_id, obj)
            if workload is None:
                return
        if event == "DELETED":
            self._pending_deleted.append(workload)
            return
        if _meta(obj).get("deletionTimestamp"):
            workload.state = "deleting"
        elif kind == "job":
            if _condition(obj, "Complete") or _condition(obj, "SuccessCriteriaMet"):
                workload.state = "succeeded"
            elif _condition(obj, "Failed") or _condition(obj, "FailureTarget"):
                workload.state = "failed"
                if not workload.stopping and not workload.reported:
                    workload.reported.add("job-failed")
                    self._pending_job_failures.append((workload, obj))
            else:
                workload.state = "running"
        else:
            workload.state = "running"
            progressing = next(
                (c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Progressing"), None
            )
            if progressing and progressing.get("reason") == "ProgressDeadlineExceeded" and not workload.stopping:
                reason = f"the inference's replicas did not become ready within {self.k8s.progress_deadline_s} s"
                if workload.note:
                    reason += f": {workload.note}"
                self._queue(workload, "deadline", reason)

    def _observe_pod(self, job_id: str, event: str, pod: Manifest) -> None:
        workload = self.workloads.get(job_id)
        if workload is None or event == "DELETED" or workload.stopping:
            return
        component = (_meta(pod).get("labels") or {}).get(COMPONENT, TRAINER)
        problem = describe_pod_problem(pod, component)
        if problem is None:
            return
        workload.note = problem
        waiting = {
            (c.get("state") or {}).get("waiting", {}).get("reason")
            for c in (pod.get("status") or {}).get("containerStatuses") or []
        }
        if waiting & FATAL_WAITING:
            # Waiting longer will not help: fail now (a training's Job is deleted, its result fails).
            self._queue(workload, "cannot-start", problem)
            if workload.kind == "training":
                workload.stopping = True
                self._pending_deletes.append(workload)
        elif workload.kind == "inference" and "CrashLoopBackOff" in waiting:
            self._queue(workload, "crash-loop", problem)

    def _adopt(self, kind: Kind, job_id: str, obj: Manifest) -> Workload | None:
        """A workload found in the cluster (after a restart): its spec comes from its annotation."""
        text = (_meta(obj).get("annotations") or {}).get(SPEC)
        if not text:
            log.warning("%s %s has no %s annotation; ignored", kind, _meta(obj).get("name"), SPEC)
            return None
        try:
            spec: JobSpec | ServeSpec = (
                JobSpec.model_validate_json(text) if kind == "job" else ServeSpec.model_validate_json(text)
            )
        except ValueError as exc:
            log.warning("%s %s: unreadable spec annotation (%s); ignored", kind, _meta(obj).get("name"), exc)
            return None
        workload = Workload(job_id, "training" if kind == "job" else "inference", str(_meta(obj).get("name")), spec)
        self.workloads[job_id] = workload
        log.info("adopted %s %s of job %s", kind, workload.name, job_id)
        return workload

    def _queue(self, workload: Workload, key: str, reason: str) -> None:
        # One failure per training job; one per kind of problem for an inference.
        if (workload.kind == "training" and workload.reported) or key in workload.reported:
            return
        workload.reported.add(key)
        self._pending_reports.append((workload, reason))

    async def _deleted(self, workload: Workload) -> None:
        self.workloads.pop(workload.job_id, None)
        if workload.stopping or workload.state in ("succeeded", "failed") or workload.reported:
            return
        what = "Job" if workload.kind == "training" else "Deployment"
        reason = f"its Kubernetes {what} {workload.name} was deleted outside Kafka-ML before it finished"
        if workload.note:
            reason += f"; last seen: {workload.note}"
        workload.reported.add("deleted")
        await self._report(workload, reason)

    async def _flush(self) -> None:
        while self._pending_deleted:
            await self._deleted(self._pending_deleted.pop(0))
        while self._pending_deletes:
            workload = self._pending_deletes.pop(0)
            with contextlib.suppress(KubernetesApiError):
                await self._delete("job" if workload.kind == "training" else "deployment", workload.name)
        while self._pending_job_failures:
            workload, job = self._pending_job_failures.pop(0)
            # The pod's story may not have reached the pod watch yet: ask for it.
            note = await self._pods_problem(workload) or workload.note
            await self._report(workload, describe_job_failure(job, note))
        while self._pending_reports:
            workload, reason = self._pending_reports.pop(0)
            await self._report(workload, reason)

    async def _pods_problem(self, workload: Workload) -> str | None:
        """What the workload's pods say went wrong (the last pod with a problem)."""
        try:
            listed = await self._call(
                self._core.list_namespaced_pod,
                self.namespace,
                label_selector=f"{self.selector},{JOB_ID}={label_value(workload.job_id)}",
            )
        except (KubernetesApiError, OSError, TimeoutError) as exc:
            log.warning("could not list the pods of job %s: %s", workload.job_id, exc)
            return None
        component = TRAINER if workload.kind == "training" else INFERENCER
        pods = sorted(
            (p for p in listed.get("items") or [] if isinstance(p, dict)),
            key=lambda p: str(_meta(p).get("creationTimestamp") or ""),
        )
        problems = [problem for pod in pods if (problem := describe_pod_problem(pod, component))]
        return problems[-1] if problems else None

    async def _report(self, workload: Workload, reason: str) -> None:
        log.warning("job %s failed: %s", workload.job_id, reason)
        try:
            await self.on_failure(workload.spec, reason)
        except Exception:
            log.exception("reporting the failure of job %s failed", workload.job_id)
