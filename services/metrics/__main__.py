"""Runs the metrics service:
KAFKAML_BOOTSTRAP_SERVERS=… KAFKAML_DATABASE_URL=… python -m services.metrics
"""

from __future__ import annotations

from services.metrics.app import MetricsService
from shared.faust_app import run_service

if __name__ == "__main__":
    run_service(MetricsService)
