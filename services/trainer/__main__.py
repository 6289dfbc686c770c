"""Run one training job, then exit::

    KAFKAML_BOOTSTRAP_SERVERS=… python -m services.trainer --spec-file PATH|- [--framework F]

The launcher hands the job spec over directly: on standard input (``-``, the local
launcher) or as a file only this worker can read (a Kubernetes Secret mounted into the
pod). It never travels on a topic: it carries the job's secrets. With ``--framework`` the
process imports TensorFlow or PyTorch *before* it reads its spec, sets it up for the CPU
and trains a tiny model once: the local launcher keeps such a warm process ready per
framework and writes the next job's spec (one without GPUs) to it, so a job does not wait
the seconds an import and a first training take. A warm process runs one job, then exits.

Exit status: 0 once the job's outcome (``TrainingFinished`` or ``TrainingFailed``) was
published; 2 when no readable job spec was handed over (nothing is published: there is no
result to attribute it to); 1 when the outcome could not be published. SIGTERM or SIGINT
end the process at once: the orchestrator that sends them reports the results as ``stopped``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time

from services.trainer.worker import train_job, warm_up
from shared.errors import SpecNotFound
from shared.events.training import JobSpec
from shared.jobs import read_spec
from shared.kafka_security import KafkaSecurityError
from shared.process import on_stop_signals, setup_logging
from shared.settings import get_settings

log = logging.getLogger("kafkaml.trainer")


def _stop_now(signum: int) -> None:
    name = signal.Signals(signum).name
    log.info("%s received: stopping the training now", name)
    logging.shutdown()
    # Training runs in a worker thread that cannot be interrupted; a prompt stop is an exit.
    os._exit(128 + signum)


async def _main(spec: JobSpec) -> int:
    on_stop_signals(_stop_now)
    settings = get_settings()
    try:
        statuses = await train_job(settings, spec)
    except KafkaSecurityError as exc:  # wrong credentials: said once, and no retry cures them
        log.error("job %s: %s", spec.job_id, exc.detail)
        return 2
    except Exception:
        log.exception("job %s: could not publish its outcome", spec.job_id)
        return 1
    log.info("job %s done: %s", spec.job_id, ", ".join(f"result {k} {v}" for k, v in statuses.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CPU features, CUDA probing) is not the job's log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="python -m services.trainer", description="Run one Kafka-ML training job.")
    parser.add_argument("--spec-file", required=True, help="the job spec (JSON): a file, or - for standard input")
    parser.add_argument("--job-id", default=None, help="the job id the spec must have (a check, and for ps)")
    parser.add_argument(
        "--framework", choices=("tensorflow", "pytorch"), default=None, help="import it before reading the spec"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level)
    if args.framework:
        started = time.monotonic()
        warm_up(args.framework)
        log.info("%s imported in %.1f s; waiting for a job spec", args.framework, time.monotonic() - started)
    try:
        spec = read_spec(args.spec_file, JobSpec, args.job_id)
    except SpecNotFound as exc:
        log.error("%s", exc.detail)
        return 2
    log.info(
        "spec received: job %s, deployment %d, %s, results %s",
        spec.job_id, spec.deployment_id, spec.framework, [m.result_id for m in spec.models],
    )  # fmt: skip
    return asyncio.run(_main(spec))


if __name__ == "__main__":
    sys.exit(main())
