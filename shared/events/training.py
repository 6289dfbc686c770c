"""Training: deployments, jobs for trainers, their progress, results and artifacts.

Flow: ``DeployTraining`` (REST) → orchestrator records the deployment and one
result per model, publishes ``DeploymentCreated`` and one ``TrainJob`` per
job (a standalone model, or a whole distributed chain) on the jobs topic, and
launches a trainer per job. The trainer, which has no database credentials,
reads its ``TrainJob``, finds its data through the control topic, and reports
``TrainingStatusChanged`` → ``EpochCompleted``… → ``TrainingFinished`` (with
the model sent as ``ArtifactChunk``s) or ``TrainingFailed``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from shared.events.catalog import Framework
from shared.events.datasources import InputFormat
from shared.events.envelope import Command, Event, Payload
from shared.events.signing import SigningKey
from shared.events.versions import WindowMetrics

ResultStatus = Literal["created", "waiting_data", "training", "finished", "failed", "stopped"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"finished", "failed", "stopped"})


def deployment_status(statuses: list[str]) -> str:
    """One word for a deployment from its results' states."""
    if not statuses:
        return "created"
    for status in ("training", "waiting_data", "created"):
        if status in statuses:
            return status
    if all(s == "finished" for s in statuses):
        return "finished"
    return "failed" if "failed" in statuses else "stopped"


class DistributedParams(Payload):
    """Joint training of a distributed chain (upstream's defaults)."""

    optimizer: str = "adam"
    learning_rate: float = Field(default=0.001, gt=0)
    loss: str = "sparse_categorical_crossentropy"
    metrics: list[str] | str = Field(default_factory=lambda: ["sparse_categorical_accuracy"])


class IncrementalParams(Payload):
    """Continuous learning on an unbounded stream (upstream's online training).

    The trainer reads the announced topic in its own consumer group, window by window
    (``window_samples`` samples, or what arrived within ``window_s`` seconds; whichever
    comes first when both are given). Each window is first evaluated with the current
    model (the prequential metric), then trained on. A new model version is published
    when ``monitoring_metric`` (prequential) moves by more than ``improvement`` in the
    direction ``change`` since the last version; at the end of every window when no
    metric is named. The training ends ``finished`` after ``stream_timeout_s`` without
    a record (None: it runs until stopped).
    """

    window_samples: int | None = Field(default=None, ge=1, le=10_000_000)
    window_s: float | None = Field(default=None, gt=0, le=86_400)
    stream_timeout_s: float | None = Field(default=None, gt=0)
    monitoring_metric: str | None = Field(default=None, min_length=1, max_length=100)
    change: Literal["up", "down"] = "up"
    improvement: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def has_a_window(self) -> IncrementalParams:
        if self.window_samples is None and self.window_s is None:
            raise ValueError("give window_samples or window_s (or both): how much of the stream one window holds")
        return self


class TrainingParams(Payload):
    configuration_id: int
    batch_size: int = Field(default=32, ge=1, le=1_000_000)
    fit: dict[str, Any] = Field(default_factory=lambda: {"epochs": 5})
    evaluate: dict[str, Any] = Field(default_factory=dict)
    confusion_matrix: bool = False
    gpus: int = Field(default=0, ge=0, le=16)
    distributed: DistributedParams | None = None
    # None: a bounded training of the announced ranges, as before.
    incremental: IncrementalParams | None = None


class DeployTraining(Command):
    """Deploy a configuration for training: one result per model."""

    type: Literal["DeployTraining"] = "DeployTraining"
    payload: TrainingParams


class ResultRef(Payload):
    id: int
    model_id: int
    status: ResultStatus


class DeploymentRecord(TrainingParams):
    id: int
    status: str
    created_at: datetime
    results: list[ResultRef]

    def partition_key(self) -> int:
        return self.id


class DeploymentCreated(Event):
    outcome = True
    type: Literal["DeploymentCreated"] = "DeploymentCreated"
    payload: DeploymentRecord


class StopTrainingPayload(Payload):
    result_id: int
    # Filled in by the orchestrator's answer: the job whose process is stopped.
    job_id: str | None = None

    def partition_key(self) -> int:
        return self.result_id


class StopTraining(Command):
    """Stop the job that trains this result (the whole chain for a distributed model)."""

    type: Literal["StopTraining"] = "StopTraining"
    payload: StopTrainingPayload


class TrainingStopped(Event):
    """The outcome of ``StopTraining`` (the results then move to ``stopped``)."""

    outcome = True
    type: Literal["TrainingStopped"] = "TrainingStopped"
    payload: StopTrainingPayload


class JobModel(Payload):
    """One model a job trains. In a chain, ``upper_model_id`` links to the next model up."""

    result_id: int
    model_id: int
    name: str
    code: str
    imports: str = ""
    upper_model_id: int | None = None


class JobSpec(Payload):
    job_id: str
    deployment_id: int
    framework: Framework
    models: list[JobModel] = Field(min_length=1)
    batch_size: int
    fit: dict[str, Any]
    evaluate: dict[str, Any]
    confusion_matrix: bool
    gpus: int = 0
    distributed: DistributedParams | None = None
    # How long the trainer waits for its control message before failing (KAFKAML_DATA_TIMEOUT_S).
    data_timeout_s: float = 3600.0
    # Above this, the trainer re-reads its data from Kafka each epoch (KAFKAML_TRAINER_CACHE_MB).
    cache_mb: int = Field(default=2048, ge=0)
    # The key this job's trainer signs its events with (only about this job's results); set by
    # the orchestrator, never the bus key. Whoever reads the spec can speak for the job.
    signing_key: SigningKey | None = None
    # The announcements the control logger had recorded for the deployment when the job was created.
    announced: list[DatasourceRef] = Field(default_factory=list)
    # The trainer reads the control topic from its first record at or after this time (ms; a
    # look-back before the job's creation), not from the beginning; None: from the beginning.
    control_since_ms: int | None = None
    # Set for an incremental deployment: the trainer reads the stream window by window.
    incremental: IncrementalParams | None = None

    def partition_key(self) -> str:
        return self.job_id


class TrainJob(Command):
    """A trainer's job spec. The orchestrator's handler answers with it and the launcher hands it to
    the trainer directly (standard input, a Kubernetes Secret): it is not published (it carries secrets)."""

    topic = "jobs"
    type: Literal["TrainJob"] = "TrainJob"
    payload: JobSpec


class DatasourceRef(Payload):
    """The control message a trainer used (its place on the control topic identifies it)."""

    control_topic: str
    partition: int
    offset: int
    # The control message's timestamp (ms): positions repeat after an embedded broker's restart.
    timestamp: int | None = None
    deployment_id: int
    topic: str
    input_format: InputFormat
    input_config: dict[str, Any]
    validation_rate: float
    test_rate: float
    total_msg: int | None = None


class StatusChange(Payload):
    result_id: int
    deployment_id: int
    status: ResultStatus
    error: str | None = None
    datasource: DatasourceRef | None = None

    def partition_key(self) -> int:
        return self.result_id


class TrainingStatusChanged(Event):
    type: Literal["TrainingStatusChanged"] = "TrainingStatusChanged"
    payload: StatusChange


class EpochMetrics(Payload):
    result_id: int
    epoch: int = Field(ge=1)
    # None where a value is not a number (a diverged loss is NaN; JSON has no NaN).
    train: dict[str, float | None]
    val: dict[str, float | None] = Field(default_factory=dict)

    def partition_key(self) -> int:
        return self.result_id


class EpochCompleted(Event):
    type: Literal["EpochCompleted"] = "EpochCompleted"
    payload: EpochMetrics


class ArtifactRef(Payload):
    format: Literal["keras", "pt"]
    size: int
    sha256: str
    chunks: int


class SampleCounts(Payload):
    train: int
    validation: int
    test: int
    # Samples that could not be decoded (wrong size, bad Avro): skipped and reported.
    bad: int = 0


class TrainingOutcome(Payload):
    result_id: int
    deployment_id: int
    test_metrics: dict[str, float | None] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None
    training_time: float
    artifact: ArtifactRef
    samples: SampleCounts
    datasource: DatasourceRef | None = None

    def partition_key(self) -> int:
        return self.result_id


class TrainingFinished(Event):
    type: Literal["TrainingFinished"] = "TrainingFinished"
    payload: TrainingOutcome


class Failure(Payload):
    result_id: int
    deployment_id: int
    error: str

    def partition_key(self) -> int:
        return self.result_id


class TrainingFailed(Event):
    type: Literal["TrainingFailed"] = "TrainingFailed"
    payload: Failure


class Chunk(Payload):
    result_id: int
    index: int = Field(ge=0)
    count: int = Field(ge=1)
    sha256: str = Field(description="of the whole artifact")
    data: str = Field(description="base64 of this chunk's bytes")
    # The model version these bytes are (None: a bounded training's one model, version 1).
    version: int | None = Field(default=None, ge=1)
    # "checkpoint": an incremental trainer's state after a window that made no new version; only
    # that trainer reads it back (to resume after a restart); the metrics service does not store it.
    purpose: Literal["result", "checkpoint"] = "result"
    # An incremental trainer's state after the window these bytes were saved at (None: a bounded
    # training's model): what it reads back from its result's partition to resume after a restart.
    state: IncrementalState | None = None

    def partition_key(self) -> int:
        return self.result_id


class IncrementalState(Payload):
    """Where an incremental training stood after a window: enough to continue after a restart."""

    window: int = Field(ge=1)
    topic: str
    # Partition of the stream's topic → the offset the next window starts at.
    next_offsets: dict[int, int] = Field(default_factory=dict)
    # The newest version published so far (None: none yet), its artifact, and the value of the
    # monitored metric that made it (the reference the next version must improve on).
    version: int | None = None
    version_artifact: ArtifactRef | None = None
    reference: float | None = None
    # The window's own event, published again on resume when the crash came before it was acknowledged.
    completed: WindowMetrics | None = None
    # Totals over every window so far (samples trained on, held out, undecodable) and the training time.
    samples: SampleCounts = Field(default_factory=lambda: SampleCounts(train=0, validation=0, test=0))
    training_time: float = 0.0


class ArtifactChunk(Event):
    topic = "artifacts"
    type: Literal["ArtifactChunk"] = "ArtifactChunk"
    payload: Chunk


class StoredResult(Payload):
    """A result whose final metrics and trained model are both stored."""

    result_id: int
    sha256: str
    size: int

    def partition_key(self) -> int:
        return self.result_id


class ResultStored(Event):
    """The metrics service holds everything a user downloads; the orchestrator may now say finished."""

    type: Literal["ResultStored"] = "ResultStored"
    payload: StoredResult


class RejectedArtifact(Payload):
    result_id: int
    error: str

    def partition_key(self) -> int:
        return self.result_id


class ArtifactRejected(Event):
    """The trained model arrived but cannot be kept (its checksum does not match): the result fails."""

    type: Literal["ArtifactRejected"] = "ArtifactRejected"
    payload: RejectedArtifact


TrainingPhase = Literal["starting", "waiting_data", "reading_data", "training"]


class Progress(Payload):
    """What a trainer is doing before its first epoch: the seconds a user would otherwise see nothing."""

    result_id: int
    deployment_id: int
    phase: TrainingPhase
    # One line for a person: "waiting for data", "read 12,000 of 60,000 samples".
    detail: str = ""
    # Samples read so far and announced (phase reading_data).
    done: int | None = None
    total: int | None = None

    def partition_key(self) -> int:
        return self.result_id


class TrainingProgress(Event):
    """A trainer's phase before its first epoch (the metrics service keeps the latest per result)."""

    type: Literal["TrainingProgress"] = "TrainingProgress"
    payload: Progress
