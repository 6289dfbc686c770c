"""Rows → the public records that events carry and the API returns (the orchestrator and the API share them)."""

from __future__ import annotations

from shared.db.tables import Configuration, Inference, Model
from shared.events import ConfigurationRecord, InferenceRecord, ModelRecord, ModelSummary
from shared.events.inference import Visualization


def model_record(model: Model) -> ModelRecord:
    return ModelRecord(
        id=model.id,
        name=model.name,
        framework=model.framework,
        description=model.description,
        imports=model.imports,
        code=model.code,
        upper_model_id=model.upper_model_id,
        summary=ModelSummary.model_validate(model.summary),
        created_at=model.created_at,
    )


def configuration_record(configuration: Configuration, model_ids: list[int]) -> ConfigurationRecord:
    return ConfigurationRecord(
        id=configuration.id,
        name=configuration.name,
        description=configuration.description,
        model_ids=model_ids,
        created_at=configuration.created_at,
    )


def inference_record(inference: Inference) -> InferenceRecord:
    stored = inference.visualization
    visualization = None if stored is None else Visualization.model_validate(stored)
    return InferenceRecord(
        id=inference.id,
        result_id=inference.result_id,
        model_id=inference.model_id,
        replicas=inference.replicas,
        input_topic=inference.input_topic,
        output_topic=inference.output_topic,
        input_format=inference.input_format,
        input_config=inference.input_config,
        upper_topic=inference.upper_topic,
        limit=inference.confidence_limit,
        gpus=inference.gpus,
        visualization=visualization,
        status=inference.status,
        error=inference.error,
        created_at=inference.created_at,
        model_version="latest" if inference.follow_latest else inference.model_version,
        serving_version=inference.serving_version,
    )
