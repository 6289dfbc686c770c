"""What the OpenAPI document says each route can answer, written in one place.

Clients generated from the document only know the answers it declares, so
every error a route can give is listed with its problem-details schema, and
routes declare their statuses through ``answers`` rather than by hand.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel

from services.api.problems import PROBLEM

# ---------------------------------------------------------------- schemas


class FieldError(BaseModel):
    field: str | None
    message: str


class ProblemDetails(BaseModel):
    """An error answer (RFC 9457); ``field`` names the field at fault, where one is."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    line: int | None = None
    errors: list[FieldError] | None = None


class Pending(BaseModel):
    """A command accepted and still running: poll ``location``."""

    command_id: uuid.UUID
    status: Literal["pending"]
    location: str


SCHEMAS: tuple[type[BaseModel], ...] = (ProblemDetails, Pending)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


# ---------------------------------------------------------------- answers

WHY: dict[int, str] = {
    400: "The body cannot be read (not UTF-8 text)",
    202: "Accepted, not finished within KAFKAML_COMMAND_TIMEOUT_S; poll the Location",
    401: "No token, or not this stack's token; or not signed in",
    403: "Signed in by cookie, but without the session's X-CSRF-Token header",
    404: "What the path or the body names does not exist",
    409: "The resource is not in a state that allows this",
    413: "The request body is larger than the API takes",
    422: "A parameter or a field is not valid",
}

# What a route that sends a command can answer besides success: a refusal, or 202 when no outcome came
# in time; one with a body may also be refused for its size.
SENT = (202, 404, 409, 422)
SENT_WITH_BODY = (*SENT, 400, 413)


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each status with its description and schema."""
    found: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status == 202:
            found[status] = {
                "description": WHY[status],
                "content": {"application/json": {"schema": _ref(Pending)}},
                "headers": {"Location": {"description": "where the outcome appears", "schema": {"type": "string"}}},
            }
        else:
            found[status] = {"description": WHY[status], "content": {PROBLEM: {"schema": _ref(ProblemDetails)}}}
        if status == 401:
            found[status]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return found


def binary(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 whose body is not JSON (a file, a picture, a stream)."""
    content = {media_type: {"schema": {"type": "string", "format": "binary"}}}
    return {200: {"description": description, "content": content}}


# ---------------------------------------------------------------- document

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def declare_csrf(document: dict[str, Any]) -> None:
    """Every mutation behind the token or a sign-in (a route that declares security) can be
    refused for a missing CSRF header."""
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            if method.upper() in MUTATING and operation.get("security"):
                operation.setdefault("responses", {}).setdefault("403", answers(403)[403])


class DocumentedAPI(FastAPI):
    """FastAPI whose document carries the schemas ``answers`` refers to."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = super().openapi()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in SCHEMAS:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            declare_csrf(document)
        assert self.openapi_schema is not None  # super().openapi() keeps what it built
        return self.openapi_schema
