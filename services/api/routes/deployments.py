"""Deployments: a configuration deployed for training, one result per model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from services.api import queries
from services.api.deps import BusDep, PathId, SessionDep
from services.api.openapi import SENT_WITH_BODY, answers
from services.api.outcomes import pending, raise_if_rejected
from services.api.routes.listing import LISTED, PageDep, paginate, words
from shared.errors import NotFound
from shared.events.training import DeploymentCreated, DeploymentRecord, DeployTraining, TrainingParams

router = APIRouter(prefix="/deployments", tags=["training"])


@router.post(
    "",
    status_code=201,
    response_model=DeploymentRecord,
    summary="Deploy a configuration for training",
    responses=answers(*SENT_WITH_BODY),
)
async def create_deployment(body: TrainingParams, bus: BusDep) -> Any:
    command = DeployTraining(payload=body)
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    assert isinstance(outcome, DeploymentCreated)
    return outcome.payload


@router.get("", response_model=list[DeploymentRecord], summary="List deployments", responses=LISTED | answers(422))
async def list_deployments(session: SessionDep, response: Response, page: PageDep) -> list[DeploymentRecord]:
    found = await queries.deployments(session)
    return paginate(response, found, page, lambda d: words(d.id, d.status, f"configuration {d.configuration_id}"))


@router.get(
    "/{deployment_id}",
    response_model=DeploymentRecord,
    summary="Get a deployment and its results",
    responses=answers(404, 422),
)
async def get_deployment(deployment_id: PathId, session: SessionDep) -> DeploymentRecord:
    found = await queries.deployments(session, deployment_id)
    if not found:
        raise NotFound(f"deployment {deployment_id} does not exist", field="deployment_id")
    return found[0]
