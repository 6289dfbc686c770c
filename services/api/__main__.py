"""Runs the REST gateway:

KAFKAML_BOOTSTRAP_SERVERS=… KAFKAML_API_DATABASE_URL=… KAFKAML_API_TOKEN=… python -m services.api
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import uvicorn
from aiokafka.errors import KafkaConnectionError

from services.api.app import create_app
from services.api.logs import redact
from shared.kafka_security import KafkaLoginRefused, KafkaSecurity, check_connection
from shared.process import setup_logging
from shared.settings import get_settings


def main() -> None:
    # Whatever the API process writes (a library's cache, a file added later) is its owner's alone.
    os.umask(0o077)
    settings = get_settings()
    setup_logging(settings.log_level)
    redact(settings.api_token)
    if KafkaSecurity.of(settings).uses_sasl or KafkaSecurity.of(settings).uses_tls:
        # Wrong credentials are said once and end the process; uvicorn would report them as a
        # failed start-up after a traceback. Brokers not up yet are the API's usual retry.
        try:
            asyncio.run(check_connection(settings))
        except KafkaLoginRefused as exc:
            logging.getLogger("kafkaml.api").error("%s", exc.detail)
            sys.exit(2)
        except KafkaConnectionError:
            pass
    # uvicorn's loggers (access log included) propagate to the root handler set up above, so they
    # share its format and its redaction; uvicorn's own logging config would bypass both.
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info", log_config=None)


if __name__ == "__main__":
    main()
