"""The session store: sessions expire, end at sign-out, and stay bounded in number."""

from __future__ import annotations

import time

import pytest

from services.api.sessions import Sessions


def test_a_session_ends_when_its_time_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now)
    sessions = Sessions(ttl_s=60)
    cookie = sessions.open()
    assert sessions.get(cookie) is not None
    monkeypatch.setattr(time, "monotonic", lambda: now + 59.9)
    assert sessions.get(cookie) is not None
    monkeypatch.setattr(time, "monotonic", lambda: now + 60)
    assert sessions.get(cookie) is None
    assert len(sessions) == 0


def test_closing_ends_only_that_session() -> None:
    sessions = Sessions(ttl_s=60)
    one, two = sessions.open(), sessions.open()
    assert sessions.get(one) != sessions.get(two)
    sessions.close(one)
    assert sessions.get(one) is None
    assert sessions.get(two) is not None
    assert sessions.get(None) is None
    assert sessions.get("") is None
    assert sessions.get("made-up") is None


def test_the_oldest_sign_in_ends_beyond_the_limit() -> None:
    sessions = Sessions(ttl_s=60, limit=3)
    cookies = [sessions.open() for _ in range(4)]
    assert len(sessions) == 3
    assert sessions.get(cookies[0]) is None
    assert all(sessions.get(c) is not None for c in cookies[1:])
