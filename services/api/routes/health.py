"""Health: the one route that needs no token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from shared.kafka import ping

router = APIRouter(tags=["health"])


class HealthReport(BaseModel):
    status: str
    kafka: str
    database: str


@router.get(
    "/health",
    summary="Whether the API reaches Kafka and PostgreSQL",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "Kafka or PostgreSQL is unreachable"}},
)
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    report = {"status": "ok", "kafka": "ok", "database": "ok"}
    try:
        await ping(state.producer)
    except Exception as exc:
        report["kafka"] = f"unreachable: {type(exc).__name__}: {exc}"
    try:
        async with state.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        report["database"] = f"unreachable: {type(exc).__name__}: {exc}"
    healthy = report["kafka"] == "ok" and report["database"] == "ok"
    if not healthy:
        report["status"] = "degraded"
    return JSONResponse(report, status_code=200 if healthy else 503)
