"""Runs the REST gateway:

KAFKAML_BOOTSTRAP_SERVERS=… KAFKAML_API_DATABASE_URL=… KAFKAML_API_TOKEN=… python -m services.api
"""

from __future__ import annotations

import uvicorn

from services.api.app import create_app
from shared.process import setup_logging
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


if __name__ == "__main__":
    main()
