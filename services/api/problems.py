"""Errors as problem details (RFC 9457): ``type``, ``title``, ``status``, ``detail``, ``field``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from shared.errors import TITLES, KafkaMLError

PROBLEM = "application/problem+json"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    body.update({k: v for k, v in extra.items() if v is not None})
    answer_headers = dict(headers or {})
    if status == 401:
        answer_headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=answer_headers or None)


class Problem(KafkaMLError):
    """An HTTP answer other than success, raised from a route."""

    def __init__(self, status: int, title: str, detail: str, *, field: str | None = None, line: int | None = None):
        super().__init__(detail, field=field)
        self.status = status
        self.title = title
        self.line = line


def install(app: FastAPI) -> None:
    @app.exception_handler(KafkaMLError)
    async def on_error(_: Request, exc: KafkaMLError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, field=exc.field, line=getattr(exc, "line", None))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")), "message": e["msg"]}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return problem(422, "Invalid request", detail, field=first["field"] or None, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request, headers.get("Allow"))
        title = {405: "Method not allowed"}.get(exc.status_code) or TITLES.get(exc.status_code, "Error")
        return problem(exc.status_code, title, str(exc.detail), headers=headers)


def allowed_methods(request: Request, given: str | None) -> str:
    """Every method the path takes: Starlette's own `Allow` names only the first route of the path."""
    methods = {m.strip() for m in (given or "").split(",") if m.strip()}
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].fullmatch(request.scope["path"]):
            methods |= {method.upper() for method in operations if method.upper() in METHODS}
    return ", ".join(sorted(methods))
