"""Continuous learning in the web UI, in real Chromium against the API as a process (issue 12).

The database holds an incremental result that is still training, with three windows and two
stored versions, and an inference of it pinned to version 1, written as the services would.
Checked at the phone's width (axe-core, no sideways scroll): the deployment form's incremental
option (its refusals at their fields, then the REST contract's body), the result's versions
table (each version downloads) and per-window curve growing from a WindowCompleted pushed on
the events topic, the inference's policy and serving version with the promote click (the
SetModelVersion it puts on the commands topic, sent with the session's CSRF token) and a
pushed InferenceVersionChanged, and the new inference form's version choice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Page

from shared import events
from shared.db.roles import plain_url
from shared.kafka import Producer, ensure_topics, make_consumer
from shared.settings import Settings
from shared.topics import topics_for
from tests.integration.api_process import start_api
from tests.integration.rows import add_result
from tests.web import PHONE, PageFactory, axe_violations, no_horizontal_scroll, screenshot, sign_in

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = "web-versions-token"
SERIOUS = ("serious", "critical")
MODELS = {1: b"version one bytes", 2: b"version two bytes, better"}
INCREMENTAL = {
    "window_samples": 500,
    "window_s": None,
    "stream_timeout_s": None,
    "monitoring_metric": "accuracy",
    "change": "up",
    "improvement": 0.01,
}


@dataclass(frozen=True)
class Seeded:
    result: int
    deployment: int
    inference: int


async def seed(database: str) -> Seeded:
    """An incremental result mid-training: windows 1-3, versions 1 (window 1) and 2 (window 3)."""
    rows = await add_result(database, "training")
    stream = {"control_topic": "c", "partition": 0, "offset": 0, "input_format": "RAW", "input_config": {}}
    connection = await asyncpg.connect(plain_url(database))
    try:
        await connection.execute(
            "UPDATE deployments SET incremental = $2::jsonb WHERE id = $1", rows.deployment, json.dumps(INCREMENTAL)
        )
        await connection.execute(
            "UPDATE training_results SET datasource = $2::jsonb WHERE id = $1", rows.result, json.dumps(stream)
        )
        for window in (1, 2, 3):
            await connection.execute(
                'INSERT INTO window_metrics (result_id, "window", samples, prequential, train, val, topic, offsets,'
                " version) VALUES ($1, $2, 500, $3::jsonb, $4::jsonb, '{}', 'stream', '[]', $5)",
                rows.result, window, json.dumps({"accuracy": 0.5 + window / 10, "loss": 1 / window}),
                json.dumps({"accuracy": 0.55 + window / 10, "loss": 0.9 / window}), {1: 1, 3: 2}.get(window),
            )  # fmt: skip
        for version, data in MODELS.items():
            await connection.execute(
                'INSERT INTO model_versions (result_id, version, sha256, size, format, metrics, "window", data)'
                " VALUES ($1, $2, $3, $4, 'keras', $5::jsonb, $6, $7)",
                rows.result, version, hashlib.sha256(data).hexdigest(), len(data),
                json.dumps({"accuracy": 0.5 + version / 5}), 2 * version - 1, data,
            )  # fmt: skip
        inference: int = await connection.fetchval(
            "INSERT INTO inferences (result_id, model_id, replicas, input_topic, output_topic, input_format,"
            " input_config, gpus, visualization, status, job_id, spec, command_id, model_version, follow_latest,"
            " serving_version) VALUES ($1, $2, 1, 'in', 'web-versions-out', 'RAW', '{}', 0, NULL, 'running',"
            " gen_random_uuid(), '{}', gen_random_uuid(), 1, false, 1) RETURNING id",
            rows.result, rows.model,
        )  # fmt: skip
    finally:
        await connection.close()
    return Seeded(result=rows.result, deployment=rows.deployment, inference=inference)


async def checked(tab: Page, name: str, failures: list[str]) -> None:
    """axe-core finds nothing serious and nothing scrolls sideways (the phone's width)."""
    serious = [v for v in await axe_violations(tab) if v["impact"] in SERIOUS]
    if serious:
        failures.append(f"{name}: {json.dumps(serious, indent=1)[:2000]}")
    if not await no_horizontal_scroll(tab):
        failures.append(f"{name}: scrolls sideways")
    await screenshot(tab, f"versions-{name}")


async def pushed_until(
    settings: Settings, message: events.Envelope, seen: Callable[[], Awaitable[bool]], timeout_s: float = 20
) -> None:
    """Publishes ``message`` on the events topic until the page shows it (the page's stream may
    open after the first one went by; the message is idempotent on the page)."""
    deadline = time.monotonic() + timeout_s
    async with Producer(settings) as producer:
        while True:
            await producer.publish(message)
            for _ in range(10):
                if await seen():
                    return
                await asyncio.sleep(0.2)
            assert time.monotonic() < deadline, f"the page never showed the pushed {message.type}"


async def commands_sent(settings: Settings, kind: str, timeout_s: float = 15) -> list[events.Envelope]:
    """The commands of class ``kind`` on the commands topic (read from its start, no group)."""
    consumer = make_consumer(settings, topics_for(settings).commands, group_id=None)
    await consumer.start()
    found: list[events.Envelope] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not found and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                found += [m for m in (events.decode(r.value) for r in records) if m.type == kind]
    finally:
        await consumer.stop()
    return found


async def test_continuous_learning_in_the_pages(
    settings: Settings, database: str, run_service: Callable[..., subprocess.Popen[bytes]], page: PageFactory
) -> None:
    ids = await seed(database)
    await ensure_topics(settings)
    base = await start_api(settings, run_service, TOKEN, KAFKAML_COMMAND_TIMEOUT_S="0.5", KAFKAML_LOG_LEVEL="WARNING")
    tab = await page(PHONE)
    csrf = await sign_in(tab, base, TOKEN)
    failures: list[str] = []

    # The deployment form: the incremental option, its refusals at their fields, then the contract's body.
    await tab.goto(f"{base}/deployments/new")
    await tab.locator("[name='fit.epochs']").wait_for()
    assert await tab.locator("#incremental-set").is_hidden()
    await tab.get_by_label("Incremental (continuous learning)").check()
    assert await tab.locator("#incremental-set").is_visible()
    assert await tab.input_value("[name='fit.epochs']") == "1", "epochs are per window when learning continuously"
    await tab.click("#deployment-form button[type=submit]")
    refusal = tab.locator("#error-incremental-window_samples")
    await refusal.wait_for()
    assert "samples or in seconds" in await refusal.inner_text()
    assert await tab.get_attribute("[name='incremental.window_samples']", "aria-invalid") == "true"
    await tab.get_by_label("Window (samples)").fill("500")
    await tab.get_by_label("Stream timeout (seconds without a record)").fill("")
    await tab.click("#deployment-form button[type=submit]")
    await tab.locator("#error-incremental-stream_timeout_s").wait_for()
    await tab.get_by_label("Indefinite (runs until stopped)").check()
    assert await tab.locator("[name='incremental.stream_timeout_s']").is_disabled()
    await tab.get_by_label("Monitoring metric").fill("accuracy")
    await tab.get_by_label("Improvement for a new version").fill("0.01")
    await checked(tab, "deployment-new", failures)
    async with tab.expect_request(lambda r: r.url.endswith("/api/v1/deployments") and r.method == "POST") as sent:
        await tab.click("#deployment-form button[type=submit]")
    body: dict[str, Any] = (await sent.value).post_data_json or {}
    assert body["incremental"] == INCREMENTAL, body
    assert body["fit"] == {"epochs": 1}

    # The result: versions (each downloads) and the per-window curve, growing from a pushed window.
    await tab.goto(f"{base}/results/{ids.result}")
    await tab.locator("#versions [data-version]").nth(1).wait_for()
    shown = await tab.locator("#versions [data-version]").evaluate_all("ns => ns.map(n => n.dataset.version)")
    assert shown == ["2", "1"], "newest first"
    assert await tab.locator("#versions code").first.inner_text() == hashlib.sha256(MODELS[2]).hexdigest()[:12]
    link = tab.get_by_role("link", name="Download version 1")
    href = await link.get_attribute("href")
    assert href == f"/api/v1/results/{ids.result}/versions/1/model"
    download = await tab.request.get(base + href)
    assert download.status == 200 and await download.body() == MODELS[1]
    about = "windows of 500 samples · runs until stopped · a version when accuracy goes up by more than 0.01"
    assert await tab.inner_text("#incremental") == about
    assert await tab.get_attribute("#windows", "data-windows") == "3"
    charts = tab.locator("#windows svg.chart")
    assert await charts.count() == 2, "one chart per metric: accuracy and loss"
    assert "prequential" in (await charts.first.get_attribute("aria-label") or "")
    await checked(tab, "result", failures)
    window = events.WindowCompleted(
        payload=events.WindowMetrics(
            result_id=ids.result, deployment_id=ids.deployment, window=4, samples=500,
            prequential={"accuracy": 0.95, "loss": 0.2}, train={"accuracy": 0.96, "loss": 0.18}, topic="stream",
        )
    )  # fmt: skip

    async def grew() -> bool:
        return await tab.get_attribute("#windows", "data-windows") == "4"

    await pushed_until(settings, window, grew)
    assert "after 4 windows" in (await charts.first.get_attribute("aria-label") or "")

    # The inference: its policy and serving version, the promote click, a pushed switch.
    await tab.goto(f"{base}/inferences/{ids.inference}")
    await tab.locator("#policy[data-policy='1']").wait_for()
    assert await tab.get_attribute("#serving", "data-version") == "1"
    choice = tab.get_by_label("Serve", exact=True)
    await tab.locator("#model_version option[value='2']").wait_for(state="attached")
    options = await tab.locator("#model_version option").evaluate_all("os => os.map(o => o.value)")
    assert options == ["latest", "2", "1"]
    assert await tab.locator("#apply-version").is_disabled(), "already pinned to the chosen version"
    await choice.select_option("2")
    assert await tab.inner_text("#apply-version") == "Promote to v2"
    await checked(tab, "inference", failures)
    path = f"/api/v1/inferences/{ids.inference}/model-version"
    async with tab.expect_request(lambda r: r.url.endswith(path) and r.method == "POST") as sent:
        await tab.click("#apply-version")
    promote = await sent.value
    assert promote.post_data_json == {"model_version": 2}
    assert (await promote.all_headers()).get("x-csrf-token") == csrf
    commands = await commands_sent(settings, "SetModelVersion")
    assert [c.payload.model_dump() for c in commands] == [
        {"inference_id": ids.inference, "model_version": 2, "version": None}
    ]
    # As the orchestrator would: the switch is stored before (or while) it is pushed.
    connection = await asyncpg.connect(plain_url(database))
    try:
        await connection.execute("UPDATE inferences SET serving_version = 2 WHERE id = $1", ids.inference)
    finally:
        await connection.close()
    switched = events.InferenceVersionChanged(
        payload=events.VersionChange(inference_id=ids.inference, replica="kafkaml-infer-x-0", version=2)
    )

    async def serving_two() -> bool:
        return await tab.get_attribute("#serving", "data-version") == "2"

    await pushed_until(settings, switched, serving_two)
    await choice.select_option("latest")
    assert await tab.inner_text("#apply-version") == "Follow latest"

    # A new inference: the newest pinned (the default), the latest, or a listed version.
    await tab.goto(f"{base}/inferences/new?result_id={ids.result}")
    await tab.locator("#model_version option[value='1']").wait_for(state="attached")
    options = await tab.locator("#model_version option").evaluate_all("os => os.map(o => o.value)")
    assert options == ["", "latest", "2", "1"]
    assert "(v2), pinned" in await tab.locator("#model_version option").first.inner_text()
    await checked(tab, "inference-new", failures)
    assert not failures, "\n".join(failures)
