"""Runs the control logger:
KAFKAML_BOOTSTRAP_SERVERS=… KAFKAML_DATABASE_URL=… python -m services.control_logger
"""

from __future__ import annotations

from services.control_logger.app import ControlLogger
from shared.faust_app import run_service

if __name__ == "__main__":
    run_service(ControlLogger)
