"""What changed, as it happens: the update hub (services/api/hub.py) over server-sent events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from services.api.deps import BIGINT_MAX, BIGINT_MIN
from services.api.hub import CLIENT_UPDATES, Entity, Filters, decode_update
from services.api.live import KEEPALIVE_S, LiveFeeds
from services.api.openapi import answers, binary
from shared.topics import topics_for

router = APIRouter(prefix="/updates", tags=["updates"])

EntityFilter = Annotated[list[Entity], Query(description="Only updates about these entities (repeatable)")]
IdFilter = Annotated[
    list[Annotated[int, Query(ge=BIGINT_MIN, le=BIGINT_MAX)]],
    Query(description="Only updates about entities with these ids (repeatable)"),
]
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get(
    "",
    summary="Every change to models, configurations, deployments, results, data sources and inferences "
    "(server-sent events)",
    response_class=StreamingResponse,
    responses=binary(
        "text/event-stream",
        "One event per change, named after its entity; data: `entity`, `id`, `kind` (the event's class), "
        "`at` (unix seconds), `detail` (the event's payload, `{}` when large). A `: keep-alive` comment every 15 s.",
    )
    | answers(422),
)
async def updates(request: Request, entity: EntityFilter = [], id: IdFilter = []) -> StreamingResponse:  # noqa: B006 - FastAPI copies the default
    filters = Filters.of(entity, id)
    feeds: LiveFeeds = request.app.state.live
    topic = topics_for(request.app.state.settings).events

    async def stream() -> AsyncIterator[str]:
        async with feeds.open(topic, decode_update, limit=CLIENT_UPDATES, wants=filters.wants) as client:
            yield ": connected\n\n"  # subscribed: what happens from now on reaches this client
            while True:
                try:
                    found, _ = await asyncio.wait_for(client.take(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield "".join(update.sse() for update in found)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=STREAM_HEADERS)
