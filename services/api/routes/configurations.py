"""Configurations: models grouped to be trained on the same stream."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from services.api.deps import BusDep, PathId, SessionDep
from services.api.openapi import SENT, SENT_WITH_BODY, answers
from services.api.outcomes import no_content, pending, raise_if_rejected
from services.api.routes.listing import LISTED, PageDep, paginate, words
from shared.db.records import configuration_record
from shared.db.repositories import ConfigurationRepository
from shared.errors import NotFound
from shared.events import (
    ConfigurationCreated,
    ConfigurationDefinition,
    ConfigurationRecord,
    CreateConfiguration,
    DeleteConfiguration,
)
from shared.events.catalog import DeleteConfigurationPayload

router = APIRouter(prefix="/configurations", tags=["configurations"])


@router.post(
    "",
    status_code=201,
    response_model=ConfigurationRecord,
    summary="Group models (the top model of a distributed chain brings its chain)",
    responses=answers(*SENT_WITH_BODY),
)
async def create_configuration(body: ConfigurationDefinition, bus: BusDep) -> Any:
    command = CreateConfiguration(payload=body)
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    assert isinstance(outcome, ConfigurationCreated)
    return outcome.payload


@router.get(
    "", response_model=list[ConfigurationRecord], summary="List configurations", responses=LISTED | answers(422)
)
async def list_configurations(session: SessionDep, response: Response, page: PageDep) -> list[ConfigurationRecord]:
    repository = ConfigurationRepository(session)
    configurations = await repository.all()
    model_ids = await repository.model_ids([c.id for c in configurations])
    found = [configuration_record(c, model_ids[c.id]) for c in configurations]
    return paginate(response, found, page, lambda c: words(c.id, c.name, c.description))


@router.get(
    "/{configuration_id}",
    response_model=ConfigurationRecord,
    summary="Get a configuration",
    responses=answers(404, 422),
)
async def get_configuration(configuration_id: PathId, session: SessionDep) -> ConfigurationRecord:
    repository = ConfigurationRepository(session)
    configuration = await repository.get(configuration_id)
    if configuration is None:
        raise NotFound(f"configuration {configuration_id} does not exist", field="configuration_id")
    return configuration_record(configuration, (await repository.model_ids([configuration_id]))[configuration_id])


@router.delete(
    "/{configuration_id}",
    status_code=204,
    summary="Delete a configuration (409 while a deployment uses it)",
    responses=answers(*SENT),
)
async def delete_configuration(configuration_id: PathId, bus: BusDep) -> Response:
    command = DeleteConfiguration(payload=DeleteConfigurationPayload(configuration_id=configuration_id))
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    return no_content()
