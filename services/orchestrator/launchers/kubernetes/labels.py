"""Names, labels and annotations: how an object says which orchestrator and which job it belongs to.

Every object carries ``app.kubernetes.io/part-of: kafkaml``, the ``kafkaml.io/instance`` of
its orchestrator (the topic prefix, so stacks can share a namespace) and its ids; the exact
job id and the spec (without the model code) sit in annotations, so that an orchestrator
that restarts adopts what runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings

Manifest = dict[str, Any]

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


def workload_labels(settings: Settings, component: str, job_id: str, **ids: int | None) -> dict[str, str]:
    """The labels of a workload and its pods: who owns it, what it is, and its ids."""
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


def spec_annotation(spec: JobSpec | ServeSpec) -> str:
    """The spec without the model code and the job's signing key: enough to adopt the workload and
    report on it. Anyone who may read the workload reads it, so nothing secret goes here: the whole
    spec is in the workload's Secret (``spec_secret_manifest``)."""
    data = spec.model_dump(mode="json", exclude={"signing_key"})
    if isinstance(spec, JobSpec):
        for model in data["models"]:
            model["code"] = ""
            model["imports"] = ""
        data["announced"] = []
    else:
        data["code"] = ""
        data["imports"] = ""
    return json.dumps(data, separators=(",", ":"), sort_keys=True)
