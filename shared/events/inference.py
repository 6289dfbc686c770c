"""Inference: a trained model served on Kafka topics by N replicas.

Flow: ``DeployInference`` (REST) → the orchestrator records the inference,
publishes ``InferenceCreated`` and a ``ServeModel`` spec on the jobs topic,
sends the model artifact again on the artifacts topic (an embedded broker
forgets it on restart), and launches the replicas. Each replica reports
``InferenceStatusChanged`` (running once it holds its partitions) and
``InferenceStats`` every few seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from shared.events.catalog import Framework
from shared.events.datasources import InputFormat
from shared.events.envelope import Command, Event, Payload
from shared.events.signing import SigningKey

InferenceStatus = Literal["starting", "running", "stopped", "failed"]


class VisualizationLabel(Payload):
    id: int = Field(ge=0, description="position of the value in the model output")
    color: str = "#3366cc"
    label: str


class Visualization(Payload):
    """Upstream Kafka-ML's visualization config."""

    type: Literal["classification", "regression"] = "classification"
    average_updated: bool = False
    average_window: int = Field(default=10000, ge=1)
    labels: list[VisualizationLabel] = Field(default_factory=list)


class InferenceParams(Payload):
    result_id: int
    replicas: int = Field(default=1, ge=1, le=64)
    input_topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    output_topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    input_format: InputFormat | None = None
    input_config: dict[str, Any] | None = None
    upper_topic: str | None = Field(default=None, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    limit: float | None = Field(default=None, ge=0, le=1)
    gpus: int = Field(default=0, ge=0, le=16)
    visualization: Visualization | None = None
    # A version number (pinned), or "latest" (follows every new version of the result);
    # None: the newest version at deploy time, pinned.
    model_version: int | Literal["latest"] | None = Field(default=None)

    @field_validator("model_version")
    @classmethod
    def positive_version(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("model versions start at 1")
        return value


class DeployInference(Command):
    """Serve a trained model on a topic (format and config default to the training stream's)."""

    type: Literal["DeployInference"] = "DeployInference"
    payload: InferenceParams


class InferenceRecord(InferenceParams):
    id: int
    model_id: int
    status: InferenceStatus
    # The version the replicas serve now (the last one any replica reported switching to).
    serving_version: int | None = None
    error: str | None = None
    created_at: datetime

    def partition_key(self) -> int:
        return self.id


class InferenceCreated(Event):
    outcome = True
    type: Literal["InferenceCreated"] = "InferenceCreated"
    payload: InferenceRecord


class InferenceRef(Payload):
    inference_id: int
    # Filled in by the orchestrator's answers: the job whose replicas are stopped.
    job_id: str | None = None

    def partition_key(self) -> int:
        return self.inference_id


class StopInference(Command):
    type: Literal["StopInference"] = "StopInference"
    payload: InferenceRef


class InferenceStopped(Event):
    outcome = True
    type: Literal["InferenceStopped"] = "InferenceStopped"
    payload: InferenceRef


class DeleteInference(Command):
    type: Literal["DeleteInference"] = "DeleteInference"
    payload: InferenceRef


class InferenceDeleted(Event):
    outcome = True
    type: Literal["InferenceDeleted"] = "InferenceDeleted"
    payload: InferenceRef


class ServeSpec(Payload):
    """What every replica of an inference needs; replicas share one consumer group."""

    job_id: str
    inference_id: int
    result_id: int
    framework: Framework
    # PyTorch rebuilds the module from the code, then loads the state dict (weights_only).
    code: str
    imports: str = ""
    artifact_sha256: str
    artifact_format: Literal["keras", "pt"]
    # The version those bytes are, and whether the replicas follow newer ones (SwitchModelVersion).
    model_version: int = 1
    follow_latest: bool = False
    input_topic: str
    output_topic: str
    input_format: InputFormat
    input_config: dict[str, Any]
    upper_topic: str | None = None
    limit: float | None = None
    replicas: int = 1
    gpus: int = 0
    group_id: str
    # Micro-batches: at most this many inputs, or what arrived within this wait. No wait by
    # default: the replica pipelines, so what piles up during one model call is the next batch,
    # and a wait only adds latency at a low rate (docs/performance.md).
    max_batch: int = 512
    max_wait_ms: float = 0.0
    stats_interval_s: float = 5.0
    # The key every replica signs its events with (only about this inference); set by the
    # orchestrator, never the bus key. Whoever reads the spec can speak for the inference.
    signing_key: SigningKey | None = None

    def partition_key(self) -> str:
        return self.job_id


class ServeModel(Command):
    topic = "jobs"
    type: Literal["ServeModel"] = "ServeModel"
    payload: ServeSpec


class InferenceStatusChange(Payload):
    inference_id: int
    status: InferenceStatus
    replica: str | None = None
    error: str | None = None

    def partition_key(self) -> int:
        return self.inference_id


class InferenceStatusChanged(Event):
    type: Literal["InferenceStatusChanged"] = "InferenceStatusChanged"
    payload: InferenceStatusChange


class Stats(Payload):
    inference_id: int
    replica: str
    window_s: float
    messages: int
    throughput: float = Field(description="messages per second in the window")
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    errors: int = 0
    lag: int | None = Field(default=None, description="None where the broker does not report it honestly")
    predicted: dict[str, int] = Field(default_factory=dict, description="class index → count (classifiers)")

    def partition_key(self) -> int:
        return self.inference_id


class InferenceStats(Event):
    type: Literal["InferenceStats"] = "InferenceStats"
    payload: Stats
