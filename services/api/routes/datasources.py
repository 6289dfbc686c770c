"""Data sources: what control messages announced."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from services.api.deps import BIGINT_MAX, BIGINT_MIN, BusDep, PathId, SessionDep
from services.api.openapi import SENT_WITH_BODY, answers
from services.api.outcomes import pending, raise_if_rejected
from services.api.routes.listing import LISTED, PageDep, paginate, words
from shared.db.repositories import DatasourceRepository
from shared.db.tables import Datasource
from shared.events.datasources import DatasourceRecord, SendDatasource, SendDatasourcePayload

router = APIRouter(prefix="/datasources", tags=["data sources"])


class SendRequest(BaseModel):
    deployment_id: int = Field(ge=BIGINT_MIN, le=BIGINT_MAX)


def record(row: Datasource) -> DatasourceRecord:
    return DatasourceRecord.model_validate(row, from_attributes=True)


@router.get(
    "",
    response_model=list[DatasourceRecord],
    summary="Data sources the control topic announced",
    responses=LISTED | answers(422),
)
async def list_datasources(session: SessionDep, response: Response, page: PageDep) -> list[DatasourceRecord]:
    found = [record(row) for row in await DatasourceRepository(session).all()]
    return paginate(
        response, found, page, lambda d: words(d.id, d.topic, d.input_format, d.description, d.deployment_id)
    )


@router.post(
    "/{datasource_id}/send",
    summary="Announce the same data to another deployment",
    responses=answers(*SENT_WITH_BODY),
)
async def send_datasource(datasource_id: PathId, body: SendRequest, bus: BusDep) -> Any:
    command = SendDatasource(
        payload=SendDatasourcePayload(datasource_id=datasource_id, deployment_id=body.deployment_id)
    )
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    return {"datasource_id": datasource_id, "deployment_id": body.deployment_id, "status": "sent"}
