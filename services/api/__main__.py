"""Runs the REST gateway:

KAFKAML_BOOTSTRAP_SERVERS=… KAFKAML_API_DATABASE_URL=… KAFKAML_API_TOKEN=… python -m services.api
"""

from __future__ import annotations

import os

import uvicorn

from services.api.app import create_app
from services.api.logs import redact
from shared.process import setup_logging
from shared.settings import get_settings


def main() -> None:
    # Whatever the API process writes (a library's cache, a file added later) is its owner's alone.
    os.umask(0o077)
    settings = get_settings()
    setup_logging(settings.log_level)
    redact(settings.api_token)
    # uvicorn's loggers (access log included) propagate to the root handler set up above, so they
    # share its format and its redaction; uvicorn's own logging config would bypass both.
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info", log_config=None)


if __name__ == "__main__":
    main()
