"""Rows → the public records that events carry and the API returns."""

from __future__ import annotations

from shared.db.tables import Configuration, Model
from shared.events import ConfigurationRecord, ModelRecord, ModelSummary


def model_record(model: Model) -> ModelRecord:
    return ModelRecord(
        id=model.id,
        name=model.name,
        framework=model.framework,  # type: ignore[arg-type]  # the table's CHECK holds it to the literal
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
