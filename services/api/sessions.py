"""Browser sessions: sign in once with the API token, then a cookie instead of the token.

A page cannot keep the token out of reach of its own scripts, nor put it on a link or an
EventSource without a URL; an HttpOnly cookie does both. The cookie is SameSite=Strict and
every cookie-authenticated mutation must also echo the session's CSRF token in a header, so
another site can neither read nor ride the session. Sessions live in the API process's memory
(the API runs as one replica): a restart signs everyone out, and signing out ends the session
for good (the old cookie is refused).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import Request

COOKIE = "kafkaml_session"
CSRF_HEADER = "X-CSRF-Token"
# Enough for every browser of a team; beyond it the oldest sign-in ends first.
MAX_SESSIONS = 1000


@dataclass(frozen=True)
class Session:
    csrf_token: str
    expires_at: float  # time.monotonic()


def _key(cookie: str) -> str:
    # Kept by digest: what the store holds is not itself a cookie that signs in.
    return hashlib.sha256(cookie.encode()).hexdigest()


class Sessions:
    """The open sessions of this process, each ending ``ttl_s`` after its sign-in."""

    def __init__(self, ttl_s: float, limit: int = MAX_SESSIONS) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self._open: OrderedDict[str, Session] = OrderedDict()

    def open(self) -> str:
        """A new session; its cookie value (shown once, to be set on the answer)."""
        cookie = secrets.token_urlsafe(32)
        self._drop_expired()
        while len(self._open) >= self.limit:
            self._open.popitem(last=False)
        self._open[_key(cookie)] = Session(secrets.token_urlsafe(32), time.monotonic() + self.ttl_s)
        return cookie

    def get(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        session = self._open.get(_key(cookie))
        if session is not None and session.expires_at <= time.monotonic():
            del self._open[_key(cookie)]
            return None
        return session

    def close(self, cookie: str | None) -> None:
        if cookie:
            self._open.pop(_key(cookie), None)

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._open.items() if s.expires_at <= now]:
            del self._open[key]

    def __len__(self) -> int:
        return len(self._open)


def store(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.web_sessions
    return sessions


def current_session(request: Request) -> Session | None:
    """The request's signed-in session, if its cookie names a live one (pages redirect otherwise)."""
    return store(request).get(request.cookies.get(COOKIE))


def csrf_ok(request: Request, session: Session) -> bool:
    return secrets.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), session.csrf_token.encode())
