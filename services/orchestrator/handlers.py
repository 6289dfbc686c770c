"""Every message type the orchestrator handles → its handler.

Each handler is a plain async function ``(message, uow) -> messages to publish``:
it runs inside one transaction (see ``shared.handling.handle_once``), and a
command it refuses gets a ``CommandRejected`` answer rather than an exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.orchestrator import catalog, inference, training
from shared.db.uow import UnitOfWork
from shared.events import Envelope

Handler = Callable[[Envelope, UnitOfWork], Awaitable[list[Envelope]]]

# Types not listed are other services' business. (Each handler takes its own message class.)
HANDLERS: dict[str, Handler] = {
    "CreateModel": catalog.create_model,  # type: ignore[dict-item]
    "DeleteModel": catalog.delete_model,  # type: ignore[dict-item]
    "CreateConfiguration": catalog.create_configuration,  # type: ignore[dict-item]
    "DeleteConfiguration": catalog.delete_configuration,  # type: ignore[dict-item]
    "ModelValidated": catalog.model_validated,  # type: ignore[dict-item]
    "ModelValidationFailed": catalog.model_validation_failed,  # type: ignore[dict-item]
    "DeployTraining": training.deploy_training,  # type: ignore[dict-item]
    "StopTraining": training.stop_training,  # type: ignore[dict-item]
    "TrainingStatusChanged": training.training_status_changed,  # type: ignore[dict-item]
    "TrainingFinished": training.training_finished,  # type: ignore[dict-item]
    "TrainingFailed": training.training_failed,  # type: ignore[dict-item]
    "SendDatasource": training.send_datasource,  # type: ignore[dict-item]
    "DeployInference": inference.deploy_inference,  # type: ignore[dict-item]
    "InferenceStatusChanged": inference.inference_status_changed,  # type: ignore[dict-item]
    "StopInference": inference.stop_inference,  # type: ignore[dict-item]
    "DeleteInference": inference.delete_inference,  # type: ignore[dict-item]
}
