"""Commands answered 202: how they ended."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.deps import SessionDep
from services.api.openapi import answers
from services.api.outcomes import API
from shared.db.repositories import OutcomeRepository

router = APIRouter(prefix="/commands", tags=["commands"])


class CommandStatus(BaseModel):
    command_id: uuid.UUID
    status: Literal["pending", "succeeded", "rejected"]
    outcome_type: str | None = None
    location: str | None = None
    outcome: dict[str, Any] | None = None


LOCATIONS = {
    "ModelCreated": ("models", "id"),
    "ConfigurationCreated": ("configurations", "id"),
}


@router.get(
    "/{command_id}",
    response_model=CommandStatus,
    summary="How a command ended (pending until then)",
    responses=answers(422),
)
async def get_command(command_id: uuid.UUID, session: SessionDep) -> CommandStatus:
    outcome = await OutcomeRepository(session).get(command_id)
    if outcome is None:
        return CommandStatus(command_id=command_id, status="pending")
    payload = outcome.event.get("payload", {})
    location = None
    if outcome.outcome_type in LOCATIONS:
        collection, key = LOCATIONS[outcome.outcome_type]
        location = f"{API}/{collection}/{payload[key]}"
    return CommandStatus(
        command_id=command_id,
        status="rejected" if outcome.outcome_type == "CommandRejected" else "succeeded",
        outcome_type=outcome.outcome_type,
        location=location,
        outcome=payload,
    )
