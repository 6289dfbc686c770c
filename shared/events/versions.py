"""Model versions: continuous learning publishes versions; inferences serve one and switch.

Flow (incremental training, ``TrainingParams.incremental``):

- the trainer, after each window, publishes ``WindowCompleted`` (the prequential metrics:
  the window evaluated with the model before it trained on it); when the window makes a new
  version, the model's ``ArtifactChunk``s (``version`` n) and then ``ModelVersionPublished``;
- the metrics service stores the version (its bytes and metrics) and answers
  ``ModelVersionStored``; a bounded training's model is stored as version 1 the same way;
- the orchestrator, for every inference of that result that follows ``latest``, publishes a
  ``SwitchModelVersion`` on the jobs topic, keyed by inference id and signed with the
  inference's own key (the one in its ``ServeSpec``), and the artifact's chunks again;
- each replica loads the new model beside the old one and switches between two
  micro-batches, then reports ``InferenceVersionChanged``; every prediction carries the
  header ``kafkaml-model-version``.

``SetModelVersion`` (REST: ``POST /inferences/{id}/model-version``) pins or unpins an
inference: promote, roll back, or follow ``latest`` again.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from shared.events.envelope import Command, Event, Payload

# The header of every prediction: the version number of the model that made it.
MODEL_VERSION_HEADER = "kafkaml-model-version"


class OffsetSpan(Payload):
    """Records ``start`` (inclusive) to ``end`` (exclusive) of one partition of the stream."""

    partition: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class WindowMetrics(Payload):
    result_id: int
    deployment_id: int
    window: int = Field(ge=1, description="1, 2, ... in stream order; never repeated after a restart")
    samples: int = Field(ge=0)
    # The window evaluated by the model as it was before training on it (test-then-train).
    prequential: dict[str, float | None] = Field(default_factory=dict)
    train: dict[str, float | None] = Field(default_factory=dict)
    val: dict[str, float | None] = Field(default_factory=dict)
    # Where the window's records were on the stream's topic.
    topic: str
    offsets: list[OffsetSpan] = Field(default_factory=list)
    # The version this window published, or None when it made none.
    version: int | None = None

    def partition_key(self) -> int:
        return self.result_id


class WindowCompleted(Event):
    """One window of an incremental training: evaluated, then trained on."""

    type: Literal["WindowCompleted"] = "WindowCompleted"
    payload: WindowMetrics


class ModelVersion(Payload):
    result_id: int
    version: int = Field(ge=1)
    sha256: str
    size: int = Field(ge=0)
    format: Literal["keras", "pt"]
    # The metrics that made it a version: the window's prequential ones (incremental), or the
    # test metrics (bounded).
    metrics: dict[str, float | None] = Field(default_factory=dict)
    window: int | None = None

    def partition_key(self) -> int:
        return self.result_id


class ModelVersionPublished(Event):
    """A trainer's new version; its chunks (``ArtifactChunk.version``) were acknowledged before."""

    type: Literal["ModelVersionPublished"] = "ModelVersionPublished"
    payload: ModelVersion


class ModelVersionStored(Event):
    """The metrics service holds the version's bytes and metrics: it can be served and downloaded."""

    type: Literal["ModelVersionStored"] = "ModelVersionStored"
    payload: ModelVersion


class VersionPolicy(Payload):
    inference_id: int
    model_version: int | Literal["latest"]
    # Filled in by the orchestrator's answer: the version the inference is switched to.
    version: int | None = None

    @field_validator("model_version")
    @classmethod
    def positive_version(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("model versions start at 1")
        return value

    def partition_key(self) -> int:
        return self.inference_id


class SetModelVersion(Command):
    """Pin an inference to a version (promote, roll back) or make it follow the latest."""

    type: Literal["SetModelVersion"] = "SetModelVersion"
    payload: VersionPolicy


class ModelVersionSet(Event):
    outcome = True
    type: Literal["ModelVersionSet"] = "ModelVersionSet"
    payload: VersionPolicy


class VersionSwitch(Payload):
    inference_id: int
    result_id: int
    version: int = Field(ge=1)
    sha256: str
    format: Literal["keras", "pt"]
    # The inference's job: its key (signer job:<job id>:inference:<id>) signs the switch.
    job_id: str | None = None

    def partition_key(self) -> int:
        return self.inference_id


class SwitchModelVersion(Command):
    """To an inference's replicas (jobs topic, compacted: the latest per inference is kept, and a
    replica that starts reads it). Signed with the inference's own key; nothing else is obeyed."""

    topic = "jobs"
    type: Literal["SwitchModelVersion"] = "SwitchModelVersion"
    payload: VersionSwitch


class VersionChange(Payload):
    inference_id: int
    replica: str
    version: int = Field(ge=1)

    def partition_key(self) -> int:
        return self.inference_id


class InferenceVersionChanged(Event):
    """A replica serves ``version`` from its next micro-batch on."""

    type: Literal["InferenceVersionChanged"] = "InferenceVersionChanged"
    payload: VersionChange
