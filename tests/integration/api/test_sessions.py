"""A browser signs in once with the token and then works by cookie: HttpOnly, SameSite=Strict, its
mutations carry the session's CSRF token (refused with 403 without it), signing out ends it for good.
Programs keep sending the bearer token and need no CSRF header. Against the API as a real process
(no orchestrator runs: an accepted command is answered 202 after the short command timeout)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import httpx
import pytest

from services.api.app import create_app
from services.api.problems import PROBLEM
from services.api.sessions import COOKIE, CSRF_HEADER
from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.integration.api_process import start_api

pytestmark = pytest.mark.integration

TOKEN = "session-token"


async def signed_in(client: httpx.AsyncClient) -> str:
    """Signs ``client`` in; the session's CSRF token."""
    answer = await client.post("/api/v1/session", json={"token": TOKEN})
    assert answer.status_code == 204, answer.text
    info = await client.get("/api/v1/session")
    assert info.status_code == 200
    csrf: str = info.json()["csrf_token"]
    return csrf


async def test_a_browser_session_by_cookie_with_csrf(
    settings: Settings, run_service: Callable[..., subprocess.Popen[bytes]]
) -> None:
    await ensure_topics(settings)
    base = await start_api(settings, run_service, TOKEN, KAFKAML_COMMAND_TIMEOUT_S="0.5")
    async with httpx.AsyncClient(base_url=base) as browser, httpx.AsyncClient(base_url=base) as program:
        wrong = await browser.post("/api/v1/session", json={"token": "not-the-token"})
        assert wrong.status_code == 401
        assert wrong.headers["content-type"] == PROBLEM
        assert wrong.json()["field"] == "token"
        assert COOKIE not in wrong.cookies
        assert (await browser.get("/api/v1/session")).status_code == 401

        answer = await browser.post("/api/v1/session", json={"token": TOKEN})
        assert answer.status_code == 204
        cookie = answer.headers["set-cookie"].lower()
        assert cookie.startswith(f"{COOKIE}=")
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "secure" not in cookie, "plain HTTP here: a Secure cookie would never come back"
        csrf = (await browser.get("/api/v1/session")).json()["csrf_token"]
        assert len(csrf) >= 32

        assert (await browser.get("/api/v1/models")).status_code == 200, "a read needs only the cookie"
        refused = await browser.delete("/api/v1/models/9")
        assert refused.status_code == 403
        assert refused.headers["content-type"] == PROBLEM
        assert CSRF_HEADER in refused.json()["detail"]
        forged = await browser.delete("/api/v1/models/9", headers={CSRF_HEADER: "x" * len(csrf)})
        assert forged.status_code == 403
        accepted = await browser.delete("/api/v1/models/9", headers={CSRF_HEADER: csrf})
        assert accepted.status_code == 202, accepted.text

        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await program.delete("/api/v1/models/9", headers=bearer)).status_code == 202
        assert (await program.get("/api/v1/models", headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await program.get("/api/v1/models", params={"token": TOKEN})).status_code == 401, "never in a URL"

        paths = (await program.get("/openapi.json")).json()["paths"]
        assert "403" in paths["/api/v1/models/{model_id}"]["delete"]["responses"], "the refusal is declared"
        assert "403" not in paths["/api/v1/models"]["get"]["responses"], "a read is never refused for CSRF"
        assert "403" not in paths["/api/v1/session"]["post"]["responses"]

        old = browser.cookies[COOKIE]
        assert (await browser.delete("/api/v1/session")).status_code == 403, "signing out needs the CSRF header"
        assert (await browser.delete("/api/v1/session", headers={CSRF_HEADER: csrf})).status_code == 204
        assert COOKIE not in browser.cookies
        # The old cookie value is refused afterwards, even by a client that kept it.
        async with httpx.AsyncClient(base_url=base, cookies={COOKIE: old}) as replay:
            assert (await replay.get("/api/v1/models")).status_code == 401
            assert (await replay.get("/api/v1/session")).status_code == 401
            assert (await replay.delete("/api/v1/models/9", headers={CSRF_HEADER: csrf})).status_code == 401


async def test_a_new_sign_in_gets_a_new_session(
    settings: Settings, run_service: Callable[..., subprocess.Popen[bytes]]
) -> None:
    base = await start_api(settings, run_service, TOKEN)
    async with httpx.AsyncClient(base_url=base) as browser:
        first = await signed_in(browser)
        old = browser.cookies[COOKIE]
        second = await signed_in(browser)
        assert first != second
        assert browser.cookies[COOKIE] != old
        async with httpx.AsyncClient(base_url=base, cookies={COOKIE: old}) as replay:
            assert (await replay.get("/api/v1/session")).status_code == 401, "the replaced session ended"


async def test_the_cookie_is_secure_over_https() -> None:
    # Signing in touches neither Kafka nor PostgreSQL: the app is called in-process without its lifespan.
    app = create_app(Settings(api_token=TOKEN, api_database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api") as client:
        answer = await client.post("/api/v1/session", json={"token": TOKEN})
    assert answer.status_code == 204
    assert "secure" in [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]
