"""The live prediction view: one Kafka consumer per inference feeds every client, and the page
served by the API draws the predictions as they arrive (in headless Chromium)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable

import asyncpg
import httpx
import numpy as np
import pytest

from services.api.live import LiveFeeds
from shared.db.roles import plain_url
from shared.kafka import Producer, create_topics, ensure_topics
from shared.settings import Settings
from shared.topics import TopicSpec
from tests.integration.api_process import start_api
from tests.integration.rows import add_result
from tests.web import PageFactory, screenshot, sign_in

pytestmark = pytest.mark.integration

VISUALIZATION = {
    "type": "classification",
    "average_updated": False,
    "average_window": 10000,
    "labels": [{"id": i, "color": c, "label": n} for i, (c, n) in enumerate(
        zip(["#fff100", "#ff8c00", "#e81123"], ["Zero", "One", "Two"], strict=True)
    )],
}  # fmt: skip


async def add_inference(database: str, output_topic: str) -> int:
    """The rows an inference hangs from, written as the orchestrator would."""
    rows = await add_result(database, "finished")
    connection = await asyncpg.connect(plain_url(database))
    try:
        inference: int = await connection.fetchval(
            "INSERT INTO inferences (result_id, model_id, replicas, input_topic, output_topic, input_format,"
            " input_config, gpus, visualization, status, job_id, spec, command_id)"
            " VALUES ($1, $2, 1, 'in', $3, 'RAW', '{}', 0, $4::jsonb, 'running', gen_random_uuid(), '{}',"
            " gen_random_uuid()) RETURNING id",
            rows.result, rows.model, output_topic, json.dumps(VISUALIZATION),
        )  # fmt: skip
        return inference
    finally:
        await connection.close()


async def send_predictions(settings: Settings, topic: str, count: int, classes: int = 3) -> None:
    rng = np.random.default_rng(0)
    async with Producer(settings) as producer:
        for _ in range(count):
            values = rng.dirichlet(np.ones(classes)).round(4).tolist()
            await producer.send(topic, json.dumps({"values": values}).encode())


async def test_one_feed_serves_every_client(settings: Settings) -> None:
    topic = f"{settings.topic_prefix}.out"
    await create_topics(settings, [TopicSpec(topic, 2)])
    feeds = LiveFeeds(settings)
    try:
        async with feeds.open(topic) as first, feeds.open(topic) as second:
            assert len(feeds.feeds) == 1, "two clients of one inference share one consumer"
            await send_predictions(settings, topic, 5)
            batches = await asyncio.wait_for(asyncio.gather(first.next(), second.next()), 20)
            assert all(len(b["predictions"][0]) == 3 for b in batches)
        feed = next(iter(feeds.feeds.values()))
        assert not feed.clients, "a client that left is no longer fed"
    finally:
        await feeds.close()


async def test_live_page_shows_predictions_arriving(
    settings: Settings, database: str, run_service: Callable[..., subprocess.Popen[bytes]], page: PageFactory
) -> None:
    await ensure_topics(settings)
    topic = f"{settings.topic_prefix}.predictions"
    await create_topics(settings, [TopicSpec(topic, 1)])
    inference = await add_inference(database, topic)
    base = await start_api(settings, run_service, "page-token")
    async with httpx.AsyncClient() as client:
        # The page and its stream need the token in a header, or a browser's sign-in; never in the URL.
        assert (await client.get(f"{base}/api/v1/inferences/{inference}/view")).status_code == 401
        in_url = await client.get(f"{base}/api/v1/inferences/{inference}/stream", params={"token": "page-token"})
        assert in_url.status_code == 401

    tab = await page()
    await sign_in(tab, base, "page-token")
    await tab.goto(f"{base}/api/v1/inferences/{inference}/view")
    status, count, current = tab.locator("#status"), tab.locator("#count"), tab.locator("#current")
    await status.filter(has_text="live").wait_for(timeout=10_000)
    await send_predictions(settings, topic, 300)
    await count.filter(has_text="300").wait_for(timeout=10_000)
    await asyncio.sleep(0.5)  # one more draw
    picture = await tab.screenshot()
    await screenshot(tab, "live-view")
    assert await count.text_content() == "300"
    assert await current.text_content() in {"Zero", "One", "Two"}, "the config's labels name the classes"
    assert len(picture) > 10_000
