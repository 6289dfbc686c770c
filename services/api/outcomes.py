"""Turning a command's outcome into an HTTP answer."""

from __future__ import annotations

from fastapi import Response
from fastapi.responses import JSONResponse

from services.api.problems import Problem
from shared.events import CommandRejected, Envelope

API = "/api/v1"


def pending(command: Envelope) -> JSONResponse:
    """202: the command is accepted and still running; poll the Location."""
    location = f"{API}/commands/{command.event_id}"
    return JSONResponse(
        {"command_id": str(command.event_id), "status": "pending", "location": location},
        status_code=202,
        headers={"Location": location},
    )


def raise_if_rejected(outcome: Envelope) -> None:
    if isinstance(outcome, CommandRejected):
        r = outcome.payload
        raise Problem(r.status, r.title, r.detail, field=r.field, line=r.line)


def no_content() -> Response:
    return Response(status_code=204)
