"""What a user reads back from an error holds no credential, and is a few lines long."""

from __future__ import annotations

import time

import pytest

from shared.scrub import MASK, MAX_LINES, known_secrets, scrub
from shared.usercode.errors import ModelCodeError, failure_message

TOKEN = "Zq3vK9_xP2mLw8RtYb4NcD7fGh1JkS5aE0uVo6iWzQ"  # the shape of secrets.token_urlsafe(32)
OWNER_URL = "postgresql://postgres:Pa55w0rd-owner-xyz@/postgres?host=/tmp/kml-x/pgdata"


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        (f"RuntimeError: {{'database_url': '{OWNER_URL}'}}", "postgresql://postgres:", "Pa55w0rd-owner-xyz"),
        ("could not connect to redis://default:hunter2hunter2@cache:6379/0", "redis://default:", "hunter2hunter2"),
        ("KeyError: password=swordfish1 host=db", "host=db", "swordfish1"),
        ('{"api_token": "abc.def-ghi", "x": 1}', '"x": 1', "abc.def-ghi"),
        ("PGPASSWORD=letmein123 psql", "psql", "letmein123"),
        ("Authorization: Bearer sk_live_abcdefgh12345", "Authorization: Bearer", "sk_live_abcdefgh12345"),
        (f"ValueError: {TOKEN} (line 3)", "(line 3)", TOKEN),
    ],
)
def test_credentials_are_masked_and_the_rest_stays(text: str, kept: str, gone: str) -> None:
    cleaned = scrub(text, secrets=())
    assert gone not in cleaned and MASK in cleaned and kept in cleaned


def test_ordinary_errors_are_left_alone() -> None:
    text = (
        "ValueError: Input 0 of layer dense_1 is incompatible: expected shape=(None, 64), found (None, 8, 8) "
        "in /opt/venv/lib/python3.11/site-packages/keras/src/layers/input_spec.py (line 12)"
    )
    assert scrub(text, secrets=()) == text


def test_the_secrets_this_process_holds_are_masked_wherever_they_appear() -> None:
    environ = {"KAFKAML_API_TOKEN": "short-but-known-1", "KAFKAML_DATABASE_URL": OWNER_URL, "PATH": "/usr/bin"}
    secrets = known_secrets(environ)
    assert secrets == {"short-but-known-1", "Pa55w0rd-owner-xyz"}
    cleaned = scrub("the token short-but-known-1 and the word Pa55w0rd-owner-xyz alone", secrets)
    assert "short-but-known-1" not in cleaned and "Pa55w0rd-owner-xyz" not in cleaned


def test_a_long_error_keeps_its_first_lines_and_its_last() -> None:
    text = "\n".join(f"line {i}" for i in range(100)) + "\nthe end (line 7)"
    cleaned = scrub(text, secrets=())
    lines = cleaned.splitlines()
    assert len(lines) == MAX_LINES
    assert lines[0] == "line 0" and lines[-1] == "the end (line 7)" and "lines left out" in lines[-2]


def test_user_code_errors_become_answers_through_the_scrubber(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKAML_API_TOKEN", "this-process-token-123")
    error = ModelCodeError(f"RuntimeError: {OWNER_URL} this-process-token-123")
    assert "Pa55w0rd" not in error.detail and "this-process-token-123" not in error.detail
    message = failure_message("model.fit", RuntimeError(f"leak {OWNER_URL}"))
    assert "Pa55w0rd" not in message and message.startswith("model.fit raised RuntimeError: leak postgresql://")


def test_scrubbing_a_huge_message_stays_fast() -> None:
    started = time.monotonic()
    for text in ("x" * 100_000, "a://" * 30_000, "password" * 20_000, "Ab1" * 40_000):
        scrub(text, secrets=())
    assert time.monotonic() - started < 2.0
