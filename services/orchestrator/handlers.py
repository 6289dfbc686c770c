"""Every message class the orchestrator handles → its handler.

Each handler is a plain async function ``(message, uow) -> messages to publish``
that runs inside one transaction (``shared.handling.handle_once``); it refuses a
command by raising ``Rejected``. Classes not listed are other services' business.
"""

from __future__ import annotations

from services.orchestrator import catalog, inference, training
from shared.db.uow import UnitOfWork
from shared.events import (
    ArtifactRejected,
    CreateConfiguration,
    CreateModel,
    DeleteConfiguration,
    DeleteInference,
    DeleteModel,
    DeployInference,
    DeployTraining,
    InferenceStatusChanged,
    ModelValidated,
    ModelValidationFailed,
    ResultStored,
    SendDatasource,
    StopInference,
    StopTraining,
    TrainingFailed,
    TrainingFinished,
    TrainingStatusChanged,
)
from shared.routing import Router

ROUTER: Router[UnitOfWork] = Router()

# Catalog
ROUTER.command(CreateModel, catalog.create_model)
ROUTER.command(DeleteModel, catalog.delete_model)
ROUTER.command(CreateConfiguration, catalog.create_configuration)
ROUTER.command(DeleteConfiguration, catalog.delete_configuration)
ROUTER.event(ModelValidated, catalog.model_validated)
ROUTER.event(ModelValidationFailed, catalog.model_validation_failed)

# Training
ROUTER.command(DeployTraining, training.deploy_training)
ROUTER.command(StopTraining, training.stop_training)
ROUTER.command(SendDatasource, training.send_datasource)
ROUTER.event(TrainingStatusChanged, training.training_status_changed)
ROUTER.event(TrainingFinished, training.training_finished)
ROUTER.event(ResultStored, training.result_stored)
ROUTER.event(ArtifactRejected, training.artifact_rejected)
ROUTER.event(TrainingFailed, training.training_failed)

# Inference
ROUTER.command(DeployInference, inference.deploy_inference)
ROUTER.command(StopInference, inference.stop_inference)
ROUTER.command(DeleteInference, inference.delete_inference)
ROUTER.event(InferenceStatusChanged, inference.inference_status_changed)
