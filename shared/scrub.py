"""Secrets out of what a user reads back: the one filter every user-code error passes.

Model code is written by strangers and its exceptions are shown to whoever asked (the
REST answer of a validation, a training's failure reason). Whatever such code managed to
read, a token, a database URL, a password, must not travel back in its error message. The
processes that run user code hold no secret (``shared.workerenv``), so this is the second
line: it removes what looks like a credential, and the secrets this process knows of.
It also keeps the message a few lines long: an error is read by a person.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

__all__ = ["MASK", "MAX_LINES", "known_secrets", "scrub"]

MASK = "***"
# An error keeps this many lines: the first ones (what happened) and the last one (where).
MAX_LINES = 10

# scheme://user:password@host -> scheme://user:***@host
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s/:@]{0,256}):(?P<secret>[^\s@/]{0,256})@")
# password=..., token: ..., "api_key": "...", PGPASSWORD=...
_ASSIGNMENT = re.compile(
    r"(?P<head>(?i:(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|credential)s?)"
    r"[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^\s\"',;&}]+)"
)
# Authorization: Bearer <token>
_BEARER = re.compile(r"(?P<head>(?i:bearer)\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})")
# A long run of base64 / base64url characters mixing cases and digits reads as a key or token.
# ("/" is left out of the run: a file path is not a key.)
_OPAQUE = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+_-]{32,}={0,2}(?![A-Za-z0-9+/_=-])")

# The settings whose values are secrets, by the environment variable that carries them.
_SECRET_VARIABLES = ("KAFKAML_API_TOKEN", "KAFKAML_DATABASE_URL", "KAFKAML_API_DATABASE_URL")
# A known secret shorter than this is not searched for (it would mask ordinary words).
_MIN_KNOWN = 8
# Longer text is cut first: an error is read by a person, and the patterns stay linear in time.
MAX_SCRUBBED = 64 * 1024


def known_secrets(environ: dict[str, str] | None = None) -> set[str]:
    """The secrets this process holds in its environment: the token, the database passwords."""
    source = os.environ if environ is None else environ
    found: set[str] = set()
    for name in _SECRET_VARIABLES:
        value = source.get(name, "")
        if not value:
            continue
        if "://" in value:
            password = urlsplit(value).password
            if password:
                found.update({password, unquote(password)})
        else:
            found.add(value)
    return {secret for secret in found if len(secret) >= _MIN_KNOWN}


def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with credentials masked and at most :data:`MAX_LINES` lines.

    ``secrets`` are masked wherever they appear (default: :func:`known_secrets`). Text past
    :data:`MAX_SCRUBBED` characters is dropped.
    """
    text = text[:MAX_SCRUBBED]
    for secret in sorted(known_secrets() if secrets is None else set(secrets), key=len, reverse=True):
        if len(secret) >= _MIN_KNOWN:
            text = text.replace(secret, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _ASSIGNMENT.sub(lambda m: m["head"] + MASK, text)
    text = _BEARER.sub(lambda m: m["head"] + MASK, text)
    text = _OPAQUE.sub(_mask_opaque, text)
    return _few_lines(text)


def _mask_opaque(match: re.Match[str]) -> str:
    word = match.group(0)
    # Random keys mix lower case, upper case and digits; identifiers and paths rarely all three.
    mixed = any(c.islower() for c in word) and any(c.isupper() for c in word) and any(c.isdigit() for c in word)
    return MASK if mixed else word


def _few_lines(text: str) -> str:
    lines = text.splitlines()
    if len(lines) <= MAX_LINES:
        return text
    left_out = len(lines) - (MAX_LINES - 1)
    return "\n".join([*lines[: MAX_LINES - 2], f"… ({left_out} lines left out)", lines[-1]])
