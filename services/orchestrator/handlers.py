"""Every message class the orchestrator handles → its handler.

Each handler is a plain async function ``(message, uow) -> messages to publish``
that runs inside one transaction (``shared.handling.handle_once``); it refuses a
command by raising ``Rejected``. Classes not listed are other services' business.
"""

from __future__ import annotations

from functools import partial

from services.orchestrator import catalog, inference, training, versions
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
    InferenceVersionChanged,
    ModelValidated,
    ModelValidationFailed,
    ModelVersionStored,
    ResultStored,
    SendDatasource,
    SetModelVersion,
    StopInference,
    StopTraining,
    TrainingFailed,
    TrainingFinished,
    TrainingStatusChanged,
)
from shared.routing import Router
from shared.topics import Topics


def make_router(
    jobs: training.JobDefaults | None = None, topics: Topics | None = None, *, answer_within_s: float = 120.0
) -> Router[UnitOfWork]:
    """The orchestrator's routing table. ``jobs``: what job specs take from the settings;
    ``topics``: the stack's own topics, which inferences may not use (default settings' names);
    ``answer_within_s``: how long a command waits for another service's answer."""
    router: Router[UnitOfWork] = Router()

    # Catalog
    router.command(CreateModel, partial(catalog.create_model, answer_within_s=answer_within_s))
    router.command(DeleteModel, catalog.delete_model)
    router.command(CreateConfiguration, catalog.create_configuration)
    router.command(DeleteConfiguration, catalog.delete_configuration)
    router.event(ModelValidated, catalog.model_validated)
    router.event(ModelValidationFailed, catalog.model_validation_failed)

    # Training
    jobs = jobs or training.JobDefaults()
    router.command(DeployTraining, partial(training.deploy_training, defaults=jobs))
    router.command(StopTraining, training.stop_training)
    router.command(SendDatasource, training.send_datasource)
    router.event(TrainingStatusChanged, training.training_status_changed)
    router.event(TrainingFinished, training.training_finished)
    router.event(ResultStored, training.result_stored)
    router.event(ArtifactRejected, training.artifact_rejected)
    router.event(TrainingFailed, training.training_failed)

    # Inference
    router.command(
        DeployInference, partial(inference.deploy_inference, topics=topics or inference.DEFAULT_TOPICS, jobs=jobs)
    )
    router.command(StopInference, inference.stop_inference)
    router.command(DeleteInference, inference.delete_inference)
    router.event(InferenceStatusChanged, inference.inference_status_changed)

    # Model versions
    router.command(SetModelVersion, versions.set_model_version)
    router.event(ModelVersionStored, versions.model_version_stored)
    router.event(InferenceVersionChanged, versions.inference_version_changed)
    return router
