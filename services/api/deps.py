"""Dependencies of the routes: settings, the read-only session, the command bus, the token or sign-in."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.commands import CommandBus
from services.api.openapi import MUTATING
from services.api.sessions import COOKIE, CSRF_HEADER, csrf_ok, current_session
from shared.errors import KafkaMLError
from shared.settings import Settings


class Unauthorized(KafkaMLError):
    status = 401
    title = "Unauthorized"


class Forbidden(KafkaMLError):
    status = 403
    title = "Forbidden"


_bearer = HTTPBearer(auto_error=False, description="The token from `kafkaml up` (stack.json) or KAFKAML_API_TOKEN")
# Declared for the document only: the session cookie is read by sessions.current_session.
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="A browser's sign-in: POST /api/v1/session")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def token_ok(request: Request, given: str) -> bool:
    expected: str = request.app.state.settings.api_token
    return secrets.compare_digest(given.encode(), expected.encode())


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _: Annotated[str | None, Depends(_cookie)],
) -> None:
    """A program sends the bearer token; a browser its session cookie, and on a mutation the
    session's CSRF token too. The token is never taken from a URL (URLs end up in logs)."""
    if credentials is not None:
        if not token_ok(request, credentials.credentials):
            raise Unauthorized("the bearer token is not valid for this stack")
        return
    session = current_session(request)
    if session is None:
        raise Unauthorized(
            "send the API token as `Authorization: Bearer <token>` (it is in .kafkaml/stack.json), "
            "or sign in (POST /api/v1/session)"
        )
    if request.method in MUTATING and not csrf_ok(request, session):
        raise Forbidden(f"a signed-in request that changes something must carry the session's {CSRF_HEADER} header")


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # The API's role can only read; the session never commits.
    async with request.app.state.sessions() as session:
        yield session


def get_bus(request: Request) -> CommandBus:
    bus: CommandBus = request.app.state.bus
    return bus


# Ids are PostgreSQL bigints: a larger number would fail in the driver instead of answering 404.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
PathId = Annotated[int, Path(ge=BIGINT_MIN, le=BIGINT_MAX)]
QueryId = Annotated[int | None, Query(ge=BIGINT_MIN, le=BIGINT_MAX)]

SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
BusDep = Annotated[CommandBus, Depends(get_bus)]
