"""List routes page and filter on the server: ?limit=&offset=&q= and the total in X-Total-Count."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from shared.db.roles import plain_url
from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.integration.api_process import start_api
from tests.integration.rows import add_result

pytestmark = pytest.mark.integration

TOKEN = "listing-token"


async def test_lists_are_paged_and_filtered(
    settings: Settings, database: str, run_service: Callable[..., subprocess.Popen[bytes]]
) -> None:
    for _ in range(3):
        await add_result(database, "finished")
    connection = await asyncpg.connect(plain_url(database))
    try:
        await connection.execute("UPDATE models SET name = 'digits-' || id WHERE id > 1")
    finally:
        await connection.close()
    await ensure_topics(settings)
    base = await start_api(settings, run_service, TOKEN, KAFKAML_LOG_LEVEL="WARNING")
    async with httpx.AsyncClient(base_url=base + "/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        everything = await api.get("/models")
        assert everything.headers["X-Total-Count"] == "3" and len(everything.json()) == 3
        first = await api.get("/models", params={"limit": 2})
        rest = await api.get("/models", params={"limit": 2, "offset": 2})
        assert [m["id"] for m in first.json() + rest.json()] == [m["id"] for m in everything.json()]
        assert first.headers["X-Total-Count"] == rest.headers["X-Total-Count"] == "3"
        matching = await api.get("/models", params={"q": "DIGITS"})
        assert [m["name"] for m in matching.json()] == ["digits-2", "digits-3"]
        assert matching.headers["X-Total-Count"] == "2"
        for path in ("/configurations", "/deployments", "/results", "/datasources", "/inferences"):
            answer = await api.get(path, params={"limit": 1})
            assert answer.status_code == 200 and "X-Total-Count" in answer.headers, path
        refused = await api.get("/results", params={"limit": 0})
        assert refused.status_code == 422 and refused.json()["field"] == "limit"
        assert (await api.get("/models", params={"offset": -1})).json()["field"] == "offset"
