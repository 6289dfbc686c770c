"""Every message type, and one way to decode any of them.

>>> msg = decode(raw_bytes)          # raises Undecodable with the reason
>>> producer.publish(topic, msg)     # see shared.kafka
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from shared.errors import Undecodable
from shared.events.catalog import (
    CommandRejected,
    ConfigurationCreated,
    ConfigurationDefinition,
    ConfigurationDeleted,
    ConfigurationRecord,
    CreateConfiguration,
    CreateModel,
    DeleteConfiguration,
    DeleteModel,
    ModelCreated,
    ModelDefinition,
    ModelDeleted,
    ModelRecord,
    ModelSummary,
    Rejection,
)
from shared.events.datasources import (
    DatasourceRecord,
    DatasourceRecorded,
    DatasourceSent,
    SendDatasource,
    SendDatasourcePayload,
)
from shared.events.envelope import Envelope, Payload
from shared.events.inference import (
    DeleteInference,
    DeployInference,
    InferenceCreated,
    InferenceDeleted,
    InferenceRecord,
    InferenceStats,
    InferenceStatusChanged,
    InferenceStopped,
    ServeModel,
    ServeSpec,
    StopInference,
)
from shared.events.training import (
    ArtifactChunk,
    DeploymentCreated,
    DeploymentRecord,
    DeployTraining,
    EpochCompleted,
    JobSpec,
    StopTraining,
    TrainingFailed,
    TrainingFinished,
    TrainingParams,
    TrainingStatusChanged,
    TrainingStopped,
    TrainJob,
)
from shared.events.validation import ModelValidated, ModelValidationFailed, ValidateModel

Message = Annotated[
    CreateModel
    | DeleteModel
    | CreateConfiguration
    | DeleteConfiguration
    | ValidateModel
    | ModelValidated
    | ModelValidationFailed
    | ModelCreated
    | ModelDeleted
    | ConfigurationCreated
    | ConfigurationDeleted
    | CommandRejected
    | DeployTraining
    | DeploymentCreated
    | StopTraining
    | TrainingStopped
    | TrainJob
    | TrainingStatusChanged
    | EpochCompleted
    | TrainingFinished
    | TrainingFailed
    | ArtifactChunk
    | DatasourceRecorded
    | SendDatasource
    | DatasourceSent
    | DeployInference
    | InferenceCreated
    | StopInference
    | InferenceStopped
    | DeleteInference
    | InferenceDeleted
    | ServeModel
    | InferenceStatusChanged
    | InferenceStats,
    Field(discriminator="type"),
]

MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)

# Events that end a REST mutation: the API waits for one of these.
OUTCOME_TYPES = frozenset(
    {
        "ModelCreated",
        "ModelDeleted",
        "ConfigurationCreated",
        "ConfigurationDeleted",
        "DeploymentCreated",
        "TrainingStopped",
        "DatasourceSent",
        "InferenceCreated",
        "InferenceStopped",
        "InferenceDeleted",
        "CommandRejected",
    }
)


def decode(raw: bytes | None) -> Envelope:
    if raw is None:
        raise Undecodable("empty message (no value)")
    try:
        message: Envelope = MESSAGE_ADAPTER.validate_json(raw)
    except PydanticValidationError as exc:
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5])
        raise Undecodable(f"not a Kafka-ML message: {errors}") from exc
    return message


__all__ = [
    "MESSAGE_ADAPTER",
    "OUTCOME_TYPES",
    "ArtifactChunk",
    "CommandRejected",
    "ConfigurationCreated",
    "ConfigurationDefinition",
    "ConfigurationDeleted",
    "ConfigurationRecord",
    "CreateConfiguration",
    "CreateModel",
    "DatasourceRecord",
    "DatasourceRecorded",
    "DatasourceSent",
    "DeleteConfiguration",
    "DeleteInference",
    "DeleteModel",
    "DeployInference",
    "DeployTraining",
    "DeploymentCreated",
    "DeploymentRecord",
    "Envelope",
    "EpochCompleted",
    "InferenceCreated",
    "InferenceDeleted",
    "InferenceRecord",
    "InferenceStats",
    "InferenceStatusChanged",
    "InferenceStopped",
    "JobSpec",
    "Message",
    "ModelCreated",
    "ModelDefinition",
    "ModelDeleted",
    "ModelRecord",
    "ModelSummary",
    "ModelValidated",
    "ModelValidationFailed",
    "Payload",
    "Rejection",
    "SendDatasource",
    "SendDatasourcePayload",
    "ServeModel",
    "ServeSpec",
    "StopInference",
    "StopTraining",
    "TrainJob",
    "TrainingFailed",
    "TrainingFinished",
    "TrainingParams",
    "TrainingStatusChanged",
    "TrainingStopped",
    "ValidateModel",
    "decode",
]
