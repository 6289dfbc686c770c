"""Dependencies of the routes: settings, the read-only session, the command bus, the token."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.commands import CommandBus
from shared.errors import KafkaMLError
from shared.settings import Settings


class Unauthorized(KafkaMLError):
    status = 401
    title = "Unauthorized"


_bearer = HTTPBearer(auto_error=False, description="The token from `kafkaml up` (stack.json) or KAFKAML_API_TOKEN")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    expected: str = request.app.state.settings.api_token
    # Browsers cannot set headers on EventSource or on a link: those GETs may carry ?token=.
    given = credentials.credentials if credentials else None
    if given is None and request.method == "GET":
        given = request.query_params.get("token")
    if given is None:
        raise Unauthorized("send the API token as `Authorization: Bearer <token>` (it is in .kafkaml/stack.json)")
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("the bearer token is not valid for this stack")


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
