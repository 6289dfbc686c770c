"""The API's bounds: request bodies (413 before parsing), pictures (rendered off the event loop, sizes
refused), live streams (a bounded buffer per client), and the `Allow` header of a 405.

None of these reach Kafka or PostgreSQL: the app is called in-process without its lifespan.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from services.api import pictures
from services.api.app import create_app
from services.api.limits import MAX_BODY_BYTES
from services.api.live import CLIENT_PREDICTIONS, Client
from services.api.problems import PROBLEM, Problem
from shared.settings import Settings

TOKEN = "limits-token"


@pytest.fixture
def app() -> FastAPI:
    return create_app(Settings(api_token=TOKEN, api_database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none"))


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_405_names_every_method_of_the_path(app: FastAPI) -> None:
    async with client(app) as api:
        answer = await api.put("/api/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 405
    assert answer.headers["content-type"] == PROBLEM
    assert {m.strip() for m in answer.headers["allow"].split(",")} >= {"GET", "POST"}


async def test_a_body_over_the_limit_is_refused_by_its_length(app: FastAPI) -> None:
    async with client(app) as api:
        answer = await api.post(
            "/api/v1/models",
            content=b"x" * (MAX_BODY_BYTES + 1),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM
    assert str(MAX_BODY_BYTES) in answer.json()["detail"]


async def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(app: FastAPI) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            sent += 65536
            yield b"x" * 65536

    async with client(app) as api:
        answer = await api.post("/api/v1/models", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["status"] == 413


def test_the_limit_takes_the_largest_model_code() -> None:
    assert MAX_BODY_BYTES > 2 * 1_000_000 + 200_000  # 1,000,000 characters, each escaped to two bytes


async def test_pictures_render_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    draw = pictures._draw_confusion_matrix

    def recording(matrix: list[list[int]], title: str) -> bytes:
        threads.append(threading.current_thread().name)
        return draw(matrix, title)

    monkeypatch.setattr(pictures, "_draw_confusion_matrix", recording)
    png = await pictures.confusion_matrix_png([[3, 1], [0, 4]], "t")
    assert png.startswith(b"\x89PNG")
    assert threads and threads[0] != threading.main_thread().name


async def test_pictures_refuse_what_is_too_large_to_draw() -> None:
    size = pictures.MAX_CLASSES + 1
    with pytest.raises(Problem) as refused:
        await pictures.confusion_matrix_png([[0] * size for _ in range(size)], "t")
    assert refused.value.status == 422
    many = {f"m{i}": [0.5] for i in range(pictures.MAX_METRICS + 1)}
    with pytest.raises(Problem):
        await pictures.curves_png(many, {}, "t")


async def test_long_curves_are_downsampled() -> None:
    series: list[float | None] = [float(i) for i in range(pictures.MAX_POINTS * 3 + 7)]
    series[5] = None
    epochs, values = pictures.downsample(series)
    assert len(epochs) <= pictures.MAX_POINTS + 1
    assert epochs[0] == 1 and epochs[-1] == len(series), "the first and the last epoch are drawn"
    assert values[-1] == series[-1]
    png = await pictures.curves_png({"loss": series}, {"loss": series[:100]}, "t")
    assert png.startswith(b"\x89PNG")


async def test_a_slow_live_client_keeps_only_the_newest_predictions() -> None:
    live = Client()
    for start in range(0, 3 * CLIENT_PREDICTIONS, 100):
        live.push([[float(i)] for i in range(start, start + 100)], at=float(start))
    batch = await live.next()
    assert len(batch["predictions"]) == CLIENT_PREDICTIONS
    assert batch["predictions"][-1] == [3.0 * CLIENT_PREDICTIONS - 1]
    assert batch["predictions"][0] == [2.0 * CLIENT_PREDICTIONS]
    live.push([[1.0]], at=9.0)
    assert (await live.next())["predictions"] == [[1.0]], "what was read is not sent again"
