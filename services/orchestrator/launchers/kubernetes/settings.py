"""How workloads run on Kubernetes: every ``KAFKAML_K8S_*`` setting of the launcher."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # A secured Kafka cluster (the names deploy/k8s uses). The Secret holding the login's password
    # (key ``sasl-password``): worker pods read KAFKAML_SASL_PASSWORD from it, so the password is
    # never part of a pod's spec; empty: none (then a password cannot be used).
    kafka_secret: str = "kafkaml-kafka"
    # A Secret with the CA file (and a client certificate and key), mounted read-only (optional: an
    # empty folder without it) at ``kafka_tls_mount`` in every worker pod, where KAFKAML_SSL_* point.
    kafka_tls_secret: str | None = "kafkaml-kafka-tls"
    kafka_tls_mount: str = "/etc/kafkaml/kafka-tls"

    # Watching.
    watch_timeout_s: int = Field(default=300, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
