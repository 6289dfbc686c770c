"""Model validation: the orchestrator asks, the trainer's validator role answers.

User code never runs in the orchestrator; it runs in a sandboxed process of
the validator, which has no database credentials.
"""

from __future__ import annotations

from typing import Literal

from shared.events.catalog import ModelDefinition, ModelSummary
from shared.events.envelope import Command, Event, Payload


class ValidateModelPayload(Payload):
    model: ModelDefinition


class ValidateModel(Command):
    topic = "validation"
    type: Literal["ValidateModel"] = "ValidateModel"
    payload: ValidateModelPayload


class ValidationPassed(Payload):
    model: ModelDefinition
    summary: ModelSummary


class ModelValidated(Event):
    type: Literal["ModelValidated"] = "ModelValidated"
    payload: ValidationPassed


class ValidationError(Payload):
    model: ModelDefinition
    error: str
    field: Literal["code", "imports"] = "code"
    line: int | None = None


class ModelValidationFailed(Event):
    type: Literal["ModelValidationFailed"] = "ModelValidationFailed"
    payload: ValidationError
