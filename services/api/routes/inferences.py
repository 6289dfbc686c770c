"""Inferences: trained models served on Kafka topics, and their live predictions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.api.deps import BusDep, PathId, SessionDep
from services.api.live import KEEPALIVE_S
from services.api.openapi import SENT, SENT_WITH_BODY, answers, binary
from services.api.outcomes import no_content, pending, raise_if_rejected
from services.api.routes.listing import LISTED, PageDep, paginate, words
from shared.db.records import inference_record
from shared.db.repositories import InferenceRepository
from shared.db.tables import InferenceStat
from shared.errors import NotFound
from shared.events.inference import (
    DeleteInference,
    DeployInference,
    InferenceCreated,
    InferenceParams,
    InferenceRecord,
    InferenceRef,
    StopInference,
)
from shared.events.versions import SetModelVersion, VersionPolicy

router = APIRouter(prefix="/inferences", tags=["inference"])


async def one(session: SessionDep, inference_id: int) -> InferenceRecord:
    inference = await InferenceRepository(session).get(inference_id)
    if inference is None:
        raise NotFound(f"inference {inference_id} does not exist", field="inference_id")
    return inference_record(inference)


@router.post(
    "",
    status_code=201,
    response_model=InferenceRecord,
    summary="Serve a trained model on Kafka topics",
    responses=answers(*SENT_WITH_BODY),
)
async def create_inference(body: InferenceParams, bus: BusDep) -> Any:
    command = DeployInference(payload=body)
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    assert isinstance(outcome, InferenceCreated)
    return outcome.payload


@router.get("", response_model=list[InferenceRecord], summary="List inferences", responses=LISTED | answers(422))
async def list_inferences(session: SessionDep, response: Response, page: PageDep) -> list[InferenceRecord]:
    found = [inference_record(i) for i in await InferenceRepository(session).all()]
    return paginate(
        response, found, page, lambda i: words(i.id, i.status, i.input_topic, i.output_topic, f"result {i.result_id}")
    )


@router.get("/{inference_id}", response_model=InferenceRecord, summary="Get an inference", responses=answers(404, 422))
async def get_inference(inference_id: PathId, session: SessionDep) -> InferenceRecord:
    return await one(session, inference_id)


@router.post(
    "/{inference_id}/stop",
    response_model=InferenceRecord,
    summary="Stop an inference's replicas",
    responses=answers(*SENT),
)
async def stop_inference(inference_id: PathId, bus: BusDep, session: SessionDep) -> Any:
    command = StopInference(payload=InferenceRef(inference_id=inference_id))
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    return await one(session, inference_id)


class VersionChoice(BaseModel):
    """``{"model_version": n}`` pins the inference to version n (promote, roll back);
    ``{"model_version": "latest"}`` makes it follow every new version of its result."""

    model_version: Annotated[int, Field(ge=1, le=2**31 - 1)] | Literal["latest"]


@router.post(
    "/{inference_id}/model-version",
    response_model=InferenceRecord,
    summary="Serve another model version (pin n, or follow the latest)",
    responses=answers(*SENT_WITH_BODY),
)
async def set_model_version(inference_id: PathId, body: VersionChoice, bus: BusDep, session: SessionDep) -> Any:
    command = SetModelVersion(payload=VersionPolicy(inference_id=inference_id, model_version=body.model_version))
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    return await one(session, inference_id)


@router.delete("/{inference_id}", status_code=204, summary="Stop and delete an inference", responses=answers(*SENT))
async def delete_inference(inference_id: PathId, bus: BusDep) -> Response:
    command = DeleteInference(payload=InferenceRef(inference_id=inference_id))
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    return no_content()


@router.get("/{inference_id}/stats", summary="The latest statistics of each replica", responses=answers(404, 422))
async def inference_stats(inference_id: PathId, session: SessionDep, limit: int = 20) -> list[dict[str, Any]]:
    await one(session, inference_id)
    rows = await session.scalars(
        select(InferenceStat)
        .where(InferenceStat.inference_id == inference_id)
        .order_by(InferenceStat.recorded_at.desc())
        .limit(min(max(limit, 1), 1000))
    )
    keep = ("replica", "recorded_at", "window_s", "messages", "throughput", "errors", "lag", "predicted")
    latency = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    return [{k: getattr(r, k) for k in (*keep, *latency)} for r in rows]


@router.get(
    "/{inference_id}/stream",
    summary="Live predictions (server-sent events; a browser is authorised by its session cookie)",
    response_class=StreamingResponse,
    responses=binary("text/event-stream", "Server-sent events: `config`, then `predictions`") | answers(404, 422),
)
async def stream(inference_id: PathId, request: Request, session: SessionDep) -> StreamingResponse:
    inference = await one(session, inference_id)
    feeds = request.app.state.live
    config = inference.visualization.model_dump(mode="json") if inference.visualization else None

    async def events() -> AsyncIterator[str]:
        async with feeds.open(inference.output_topic) as client:
            # Only once the feed reads from a known position: pages say "live" on this event, and
            # what is produced after it reaches them.
            yield f"event: config\ndata: {json.dumps({'inference': inference.id, 'visualization': config})}\n\n"
            while not await request.is_disconnected():
                try:
                    batch = await asyncio.wait_for(client.next(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: predictions\ndata: {json.dumps(batch)}\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.get(
    "/{inference_id}/view",
    response_class=HTMLResponse,
    summary="The live prediction view (a page)",
    responses=answers(404, 422),
)
async def view(inference_id: PathId, session: SessionDep) -> HTMLResponse:
    inference = await one(session, inference_id)
    page = files("services.api.pages").joinpath("live.html").read_text()
    return HTMLResponse(page.replace("{{INFERENCE_ID}}", str(inference.id)))
