"""The runtime of users' model code: building a model from its source, and its errors.

Shared by the processes that run user code (the validator's sandbox child,
the trainer, the inferencer); importing it imports no framework.
"""

from shared.usercode.building import base_namespace, build_model, summarize, validate_definition
from shared.usercode.errors import Field, ModelCodeError, failure_message, user_location

__all__ = [
    "Field",
    "ModelCodeError",
    "base_namespace",
    "build_model",
    "failure_message",
    "summarize",
    "user_location",
    "validate_definition",
]
