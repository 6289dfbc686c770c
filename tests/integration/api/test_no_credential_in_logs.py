"""No credential in the API's log: after a browser signed in, a program called with the bearer token, a
careless client put the token in a URL, a live stream ran and the browser signed out, the token, the
session cookie and the CSRF token appear nowhere in what the API process logged, though its access
log names every request. Whatever the process creates is readable by its owner only (umask 077)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.api.sessions import COOKIE, CSRF_HEADER
from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.integration.api_process import start_api

pytestmark = pytest.mark.integration


def umask_of(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line.split()[1] for line in status if line.startswith("Umask"))


def read_log(folder: Path, secret: str) -> tuple[str, str]:
    """The API's log, and the names of the files under ``folder`` that hold ``secret`` (grep -r)."""
    (log_file,) = folder.glob("api-*.log")
    found = subprocess.run(["grep", "-r", "-l", secret, str(folder)], capture_output=True, text=True, check=False)
    return log_file.read_text(), found.stdout


async def read_updates_briefly(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/api/v1/updates", timeout=30) as answer:
        assert answer.status_code == 200
        async for line in answer.aiter_lines():
            if line == ": connected":
                return


async def test_the_api_logs_no_credential(
    settings: Settings, run_service: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    token = secrets.token_urlsafe(32)
    started: list[subprocess.Popen[bytes]] = []

    def run(module: str, env: dict[str, str], name: str | None = None) -> subprocess.Popen[bytes]:
        started.append(run_service(module, env, name=name))
        return started[-1]

    await ensure_topics(settings)
    base = await start_api(settings, run, token, KAFKAML_COMMAND_TIMEOUT_S="0.5")
    (api,) = started
    assert umask_of(api.pid) == "0077", "what the API creates is readable by its owner only"

    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base) as browser, httpx.AsyncClient(base_url=base) as program:
        assert (await browser.post("/api/v1/session", json={"token": token})).status_code == 204
        cookie = browser.cookies[COOKIE]
        csrf = (await browser.get("/api/v1/session")).json()["csrf_token"]
        assert (await browser.get("/api/v1/models")).status_code == 200
        assert (await browser.delete("/api/v1/models/3", headers={CSRF_HEADER: csrf})).status_code == 202
        await read_updates_briefly(browser)
        assert (await browser.get("/api/v1/inferences/7/stream")).status_code == 404
        assert (await program.get("/api/v1/results", headers=bearer)).status_code == 200
        assert (await program.post("/api/v1/models", headers=bearer, json={"name": token})).status_code == 422
        careless = await program.get(f"/api/v1/models?token={token}&api_key={token}")
        assert careless.status_code == 401
        assert (await program.get(f"/api/v1/{token}", headers=bearer)).status_code == 404
        assert (await browser.delete("/api/v1/session", headers={CSRF_HEADER: csrf})).status_code == 204

    api.terminate()
    await asyncio.to_thread(api.wait, 20)
    log, holding_token = await asyncio.to_thread(read_log, tmp_path, token)
    assert '"GET /api/v1/models' in log and '"POST /api/v1/session' in log, "the access log is there to search"
    assert "[redacted]" in log, "the URL that carried the token was logged without it"
    assert holding_token == "", f"the token is in {holding_token}"
    for secret in (cookie, csrf):
        assert secret not in log
