"""Model validation: the orchestrator asks, the trainer's validator role answers.

User code never runs in the orchestrator; it runs in a sandboxed process of
the validator, which has no database credentials.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from shared.events.catalog import ModelDefinition, ModelSummary
from shared.events.envelope import Envelope, Payload


class ValidateModelPayload(Payload):
    model: ModelDefinition


class ValidateModel(Envelope):
    kind: ClassVar[str] = "command"
    type: Literal["ValidateModel"] = "ValidateModel"
    payload: ValidateModelPayload


class ValidationPassed(Payload):
    model: ModelDefinition
    summary: ModelSummary


class ModelValidated(Envelope):
    type: Literal["ModelValidated"] = "ModelValidated"
    payload: ValidationPassed


class ValidationError(Payload):
    model: ModelDefinition
    error: str
    field: Literal["code", "imports"] = "code"
    line: int | None = None


class ModelValidationFailed(Envelope):
    type: Literal["ModelValidationFailed"] = "ModelValidationFailed"
    payload: ValidationError
