"""Commands and events of the catalog: models and configurations."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shared.events.envelope import Command, Event, Payload

Framework = Literal["tensorflow", "pytorch"]


# --- shared payload pieces -------------------------------------------------


class ModelDefinition(Payload):
    """A model as a user defines it: source code that assigns ``model``."""

    name: str = Field(min_length=1, max_length=200)
    framework: Framework
    code: str = Field(min_length=1, max_length=1_000_000)
    imports: str = Field(default="", max_length=100_000)
    description: str = Field(default="", max_length=10_000)
    upper_model_id: int | None = None


class LayerSummary(Payload):
    name: str
    type: str
    output_shape: list[Any] | None = None
    parameters: int = 0


class ModelSummary(Payload):
    layers: list[LayerSummary]
    parameters: int
    trainable_parameters: int
    input_shapes: list[list[int | None]]
    output_shapes: list[list[int | None]]


class ModelRecord(Payload):
    id: int
    name: str
    framework: Framework
    description: str
    imports: str
    code: str
    upper_model_id: int | None
    summary: ModelSummary
    created_at: datetime

    def partition_key(self) -> int:
        return self.id


class ConfigurationRecord(Payload):
    id: int
    name: str
    description: str
    model_ids: list[int]
    created_at: datetime

    def partition_key(self) -> int:
        return self.id


# --- commands --------------------------------------------------------------


class CreateModel(Command):
    """Validate a model's code in the trainer's sandbox, then add it to the catalog."""

    type: Literal["CreateModel"] = "CreateModel"
    payload: ModelDefinition


class DeleteModelPayload(Payload):
    model_id: int

    def partition_key(self) -> int:
        return self.model_id


class DeleteModel(Command):
    type: Literal["DeleteModel"] = "DeleteModel"
    payload: DeleteModelPayload


class ConfigurationDefinition(Payload):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    model_ids: list[int] = Field(min_length=1)


class CreateConfiguration(Command):
    """Group models; the top model of a distributed chain brings its whole chain."""

    type: Literal["CreateConfiguration"] = "CreateConfiguration"
    payload: ConfigurationDefinition


class DeleteConfigurationPayload(Payload):
    configuration_id: int

    def partition_key(self) -> int:
        return self.configuration_id


class DeleteConfiguration(Command):
    type: Literal["DeleteConfiguration"] = "DeleteConfiguration"
    payload: DeleteConfigurationPayload


# --- events ----------------------------------------------------------------


class ModelCreated(Event):
    outcome = True
    type: Literal["ModelCreated"] = "ModelCreated"
    payload: ModelRecord


class ModelDeleted(Event):
    outcome = True
    type: Literal["ModelDeleted"] = "ModelDeleted"
    payload: DeleteModelPayload


class ConfigurationCreated(Event):
    outcome = True
    type: Literal["ConfigurationCreated"] = "ConfigurationCreated"
    payload: ConfigurationRecord


class ConfigurationDeleted(Event):
    outcome = True
    type: Literal["ConfigurationDeleted"] = "ConfigurationDeleted"
    payload: DeleteConfigurationPayload


class Rejection(Payload):
    """Why a command changed nothing, in the terms of an HTTP problem."""

    command_type: str
    status: int = Field(description="404 missing, 409 conflict, 413 too large, 422 invalid, 500 could not be processed")
    title: str
    detail: str
    field: str | None = None
    line: int | None = None


class CommandRejected(Event):
    outcome = True
    type: Literal["CommandRejected"] = "CommandRejected"
    payload: Rejection
