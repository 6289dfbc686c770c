"""A bound on request bodies, checked before anything parses them.

Without one a client could make the API hold any amount of memory. The bound
stays above the largest valid body: a model's code may be 1,000,000 characters
(``ModelDefinition``), which JSON escapes can grow to several bytes each, and a
command must also fit the producer's 8 MiB request size.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.problems import problem

# The default of KAFKAML_API_MAX_BODY_BYTES.
MAX_BODY_BYTES = 8 * 1024 * 1024


def too_large(limit: int) -> str:
    return f"the request body is larger than the API takes ({limit} bytes)"


class BodyLimit:
    """Answers 413 when Content-Length or the bytes actually sent exceed ``limit``."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await problem(413, "Too large", too_large(self.limit))(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            # A chunked body has no Content-Length: count what arrives. Raised while a route
            # reads its body, the HTTPException becomes the same 413 problem.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, too_large(self.limit))
            return message

        await self.app(scope, counted, send)
