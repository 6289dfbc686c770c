"""The API's log never carries a credential.

The token only travels in a header or a sign-in body, and neither is logged; but a client may
still put it in a URL (an old link, a script), and the access log writes URLs. So every line
the process logs passes through ``Redact``, which replaces the secrets it knows (the token, as
sent and as a URL would encode it) wherever they appear: message, arguments, traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "[redacted]"


class Redact(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""))}
        self.secrets = sorted(forms, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self._clean(record.stack_info)
        return True


def redact(*secrets: str | None) -> None:
    """Filters every handler of the root logger (where uvicorn's loggers propagate, too)."""
    kept = Redact(s for s in secrets if s)
    for handler in logging.getLogger().handlers:
        handler.addFilter(kept)
