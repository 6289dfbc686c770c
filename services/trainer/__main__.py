"""Run one training job, then exit::

    KAFKAML_BOOTSTRAP_SERVERS=… python -m services.trainer --job-id <id>

Exit status: 0 once the job's outcome (``TrainingFinished`` or
``TrainingFailed``) was published; 2 when no job spec with that id was found
(nothing is published: there is no result to attribute it to); 1 when the
outcome could not be published. SIGTERM or SIGINT end the process at once:
the orchestrator that sends them reports the results as ``stopped``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from services.trainer.worker import run_job
from shared.errors import SpecNotFound
from shared.process import on_stop_signals, setup_logging
from shared.settings import get_settings

log = logging.getLogger("kafkaml.trainer")


def _stop_now(signum: int) -> None:
    name = signal.Signals(signum).name
    log.info("%s received: stopping the training now", name)
    logging.shutdown()
    # Training runs in a worker thread that cannot be interrupted; a prompt stop is an exit.
    os._exit(128 + signum)


async def _main(job_id: str) -> int:
    on_stop_signals(_stop_now)
    settings = get_settings()
    try:
        statuses = await run_job(settings, job_id)
    except SpecNotFound as exc:
        log.error("%s", exc.detail)
        return 2
    except Exception:
        log.exception("job %s: could not publish its outcome", job_id)
        return 1
    log.info("job %s done: %s", job_id, ", ".join(f"result {k} {v}" for k, v in statuses.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CPU features, CUDA probing) is not the job's log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="python -m services.trainer", description="Run one Kafka-ML training job.")
    parser.add_argument("--job-id", required=True, help="the job_id of a TrainJob on the jobs topic")
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level)
    return asyncio.run(_main(args.job_id))


if __name__ == "__main__":
    sys.exit(main())
