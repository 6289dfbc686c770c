"""Runs the orchestrator:
KAFKAML_BOOTSTRAP_SERVERS=… KAFKAML_DATABASE_URL=… python -m services.orchestrator
"""

from __future__ import annotations

from services.orchestrator.app import Orchestrator
from shared.faust_app import run_service

if __name__ == "__main__":
    run_service(Orchestrator)
