"""The Kubernetes launcher (``KAFKAML_LAUNCHER=kubernetes``): trainings as Jobs, inferences as Deployments.

- ``settings``: every ``KAFKAML_K8S_*`` setting;
- ``labels`` and ``manifests``: the objects sent, as pure functions (tests validate them);
- ``api``: the raw calls, those ``deploy/k8s/base/rbac.yaml`` grants and no more;
- ``watch``: list, then watch, resuming from the last resource version;
- ``tracking`` and ``status``: objects turned into workload states and failure reasons;
- ``launcher``: :class:`KubernetesLauncher`, which ties them together.
"""

from services.orchestrator.launchers.kubernetes.api import Kind, KubernetesApiError
from services.orchestrator.launchers.kubernetes.labels import (
    COMPONENT,
    DEPLOYMENT_ID,
    INFERENCE_ID,
    INFERENCER,
    INSTANCE,
    JOB_ID,
    KAFKA_ONLY,
    MANAGED_BY,
    MANAGER,
    NETWORK,
    PART_OF,
    RESULT_ID,
    RESULT_IDS,
    SPEC,
    TRAINER,
    Manifest,
    inference_name,
    instance_of,
    label_value,
    object_name,
    selector,
    training_name,
)
from services.orchestrator.launchers.kubernetes.launcher import KubernetesLauncher
from services.orchestrator.launchers.kubernetes.manifests import (
    alive_probe_command,
    inference_deployment_manifest,
    training_job_manifest,
)
from services.orchestrator.launchers.kubernetes.settings import KubernetesSettings
from services.orchestrator.launchers.kubernetes.status import (
    FATAL_WAITING,
    describe_job_failure,
    describe_pod_problem,
)
from services.orchestrator.launchers.kubernetes.tracking import Workload

__all__ = [
    "COMPONENT",
    "DEPLOYMENT_ID",
    "FATAL_WAITING",
    "INFERENCER",
    "INFERENCE_ID",
    "INSTANCE",
    "JOB_ID",
    "KAFKA_ONLY",
    "MANAGED_BY",
    "MANAGER",
    "NETWORK",
    "PART_OF",
    "RESULT_ID",
    "RESULT_IDS",
    "SPEC",
    "TRAINER",
    "Kind",
    "KubernetesApiError",
    "KubernetesLauncher",
    "KubernetesSettings",
    "Manifest",
    "Workload",
    "alive_probe_command",
    "describe_job_failure",
    "describe_pod_problem",
    "inference_deployment_manifest",
    "inference_name",
    "instance_of",
    "label_value",
    "object_name",
    "selector",
    "training_job_manifest",
    "training_name",
]
