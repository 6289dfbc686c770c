"""Signing a browser in and out (services/api/sessions.py says why a cookie)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from services.api.deps import Forbidden, Unauthorized, token_ok
from services.api.openapi import answers
from services.api.sessions import COOKIE, CSRF_HEADER, csrf_ok, current_session, store

router = APIRouter(prefix="/session", tags=["session"])


class SignIn(BaseModel):
    token: str = Field(min_length=1, max_length=1000, description="The API token (stack.json or KAFKAML_API_TOKEN)")


class SessionInfo(BaseModel):
    csrf_token: str = Field(description=f"Send it as `{CSRF_HEADER}` on every POST, PUT, PATCH and DELETE")


@router.post(
    "",
    status_code=204,
    summary="Sign in with the API token: sets the session cookie",
    responses=answers(400, 401, 413, 422)
    | {204: {"description": "Signed in", "headers": {"Set-Cookie": {"schema": {"type": "string"}}}}},
)
async def sign_in(body: SignIn, request: Request) -> Response:
    if not token_ok(request, body.token):
        raise Unauthorized("this is not the API token of this stack", field="token")
    sessions = store(request)
    sessions.close(request.cookies.get(COOKIE))  # a new sign-in replaces the old session
    answer = Response(status_code=204)
    answer.set_cookie(
        COOKIE,
        sessions.open(),
        max_age=round(sessions.ttl_s),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.get("", response_model=SessionInfo, summary="The signed-in session's CSRF token", responses=answers(401))
async def get_session_info(request: Request) -> SessionInfo:
    session = current_session(request)
    if session is None:
        raise Unauthorized("not signed in (POST /api/v1/session)")
    return SessionInfo(csrf_token=session.csrf_token)


@router.delete("", status_code=204, summary="Sign out: the session ends", responses=answers(401, 403))
async def sign_out(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        raise Unauthorized("not signed in (POST /api/v1/session)")
    if not csrf_ok(request, session):
        raise Forbidden(f"signing out needs the session's {CSRF_HEADER} header")
    store(request).close(request.cookies.get(COOKIE))
    answer = Response(status_code=204)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return answer
