"""Runs the control logger:

KAFKAML_BOOTSTRAP_SERVERS=… KAFKAML_DATABASE_URL=… python -m services.control_logger
"""

from __future__ import annotations

import asyncio
import logging

from faust import Worker

from services.control_logger.app import create_app
from shared.kafka import ensure_topics
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(ensure_topics(settings))
    app = create_app(settings)
    Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
