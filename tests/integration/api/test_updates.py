"""The update hub: one consumer of the events topic per API process, fanned out over server-sent
events to every open page, each with its filters and a bounded buffer; a page that goes away frees
its place. The API runs in this process (uvicorn on a real port) so that its feeds can be looked at."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.api.app import create_app
from services.api.problems import PROBLEM
from services.api.sessions import COOKIE
from shared import events
from shared.kafka import Producer, ensure_topics
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import free_port

pytestmark = pytest.mark.integration

BEARER = {"Authorization": "Bearer test-token"}


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[str, FastAPI]]:
    await ensure_topics(settings)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the API did not start"
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


class Stream:
    """One page's stream of updates: the events read so far, as (name, data)."""

    def __init__(self, answer: httpx.Response) -> None:
        self.lines = answer.aiter_lines()
        self.comments: list[str] = []

    async def next_event(self) -> tuple[str, dict[str, Any]]:
        name, data = "", ""
        async for line in self.lines:
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "" and name:
                return name, json.loads(data)
        raise AssertionError("the stream ended")

    async def connected(self) -> None:
        async for line in self.lines:
            if line == ": connected":
                return
        raise AssertionError("the stream ended before it said connected")


@asynccontextmanager
async def stream(client: httpx.AsyncClient, **params: Any) -> AsyncIterator[Stream]:
    async with client.stream("GET", "/api/v1/updates", params=params, timeout=30) as answer:
        assert answer.status_code == 200, await answer.aread()
        assert answer.headers["content-type"].startswith("text/event-stream")
        opened = Stream(answer)
        await asyncio.wait_for(opened.connected(), 20)
        yield opened


async def produce(settings: Settings, *messages: events.Envelope, raw: bytes | None = None) -> None:
    async with Producer(settings) as producer:
        if raw is not None:
            await producer.send(topics_for(settings).events, raw)
        for message in messages:
            await producer.publish(message)


def failed(result_id: int) -> events.TrainingFailed:
    return events.TrainingFailed(payload=events.Failure(result_id=result_id, deployment_id=1, error="boom"))


async def test_every_page_gets_the_updates_it_asks_for(settings: Settings) -> None:
    async with (
        serving(settings) as (base, app),
        httpx.AsyncClient(base_url=base, headers=BEARER) as program,
        httpx.AsyncClient(base_url=base) as browser,
    ):
        assert (await browser.post("/api/v1/session", json={"token": "test-token"})).status_code == 204
        async with (
            stream(program) as everything,
            stream(browser, entity="result", id=12) as one_result,
            stream(program, entity=["model", "configuration"]) as models,
        ):
            assert len(app.state.live.feeds) == 1, "one consumer of the events topic serves every page"
            epoch = events.EpochCompleted(payload=events.EpochMetrics(result_id=12, epoch=3, train={"loss": 0.25}))
            deleted = events.ModelDeleted(payload=events.DeleteModelPayload(model_id=5))
            await produce(settings, failed(13), epoch, deleted, raw=b"not an event")
            seen = [await asyncio.wait_for(everything.next_event(), 20) for _ in range(3)]
            assert {(name, data["id"], data["kind"]) for name, data in seen} == {
                ("result", 13, "TrainingFailed"),
                ("result", 12, "EpochCompleted"),
                ("model", 5, "ModelDeleted"),
            }, "what is not an event is skipped and the stream goes on"
            name, data = await asyncio.wait_for(one_result.next_event(), 20)
            assert (name, data["entity"], data["id"]) == ("result", "result", 12)
            assert data["detail"]["train"] == {"loss": 0.25}, "the event's payload travels as the detail"
            assert abs(data["at"] - epoch.occurred_at.timestamp()) < 1e-3
            assert (await asyncio.wait_for(models.next_event(), 20))[1]["id"] == 5

            await produce(settings, failed(12))
            assert (await asyncio.wait_for(one_result.next_event(), 20))[1]["kind"] == "TrainingFailed"
        feed = next(iter(app.state.live.feeds.values()))
        for _ in range(100):
            if not feed.clients:
                break
            await asyncio.sleep(0.05)
        assert not feed.clients, "a page that went away no longer holds a buffer"


async def test_updates_need_a_sign_in_and_valid_filters(settings: Settings) -> None:
    async with serving(settings) as (base, _), httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/api/v1/updates")).status_code == 401
        client.cookies.set(COOKIE, "made-up")
        assert (await client.get("/api/v1/updates")).status_code == 401
        wrong = await client.get("/api/v1/updates", params={"entity": "bogus"}, headers=BEARER)
        assert wrong.status_code == 422
        assert wrong.headers["content-type"] == PROBLEM
        assert wrong.json()["field"].startswith("entity"), "the error names the filter at fault"
        # What schemathesis (test_openapi.py) cannot wait for on an endless stream, checked here.
        declared = (await client.get("/openapi.json")).json()["paths"]["/api/v1/updates"]["get"]["responses"]
        assert set(declared) == {"200", "401", "422"}
        assert set(declared["200"]["content"]) == {"text/event-stream"}
        assert set(declared["401"]["content"]) == set(declared["422"]["content"]) == {PROBLEM}
