"""The redacting log filter: the secret goes from messages, arguments and tracebacks."""

from __future__ import annotations

import io
import logging

from services.api.logs import REDACTED, Redact

SECRET = "s3cret/tok+en"


def test_a_secret_is_redacted_wherever_it_is_logged() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redact([SECRET, ""]))
    log = logging.getLogger("test.redact")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning('"GET /x?token=%s HTTP/1.1" %d', "s3cret%2Ftok%2Ben", 401)
        log.warning("in the message: %s", SECRET)
        try:
            raise ValueError(f"bad {SECRET}")
        except ValueError:
            log.exception("failed")
        log.warning("nothing to hide")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text
    assert "s3cret" not in text
    assert text.count(REDACTED) == 3
    assert '"GET /x?token=[redacted] HTTP/1.1" 401' in text
    assert "nothing to hide" in text
