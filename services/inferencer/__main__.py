"""Run one replica of an inference until it is stopped::

    KAFKAML_BOOTSTRAP_SERVERS=… python -m services.inferencer --spec-file PATH|- --replica <n>

The launcher hands the ``ServeSpec`` over directly, as it does a trainer's: on standard
input (``-``, the local launcher) or as a file only this replica can read (a Kubernetes
Secret mounted into the pod); it never travels on a topic.

Exit status: 0 after a stop request (SIGTERM or SIGINT: the batch in hand is
finished and committed, the group left, ``stopped`` published); 1 when the
inference failed (no artifact in time, a checksum or load error, the broker
gone: ``failed`` published with the reason where the broker still answers);
2 when no readable spec was handed over (nothing is published: there is no
inference to attribute it to). A second stop request ends the
process at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

from services.inferencer.replica import serve
from shared.errors import SpecNotFound
from shared.events.inference import ServeSpec
from shared.jobs import read_spec
from shared.kafka_security import KafkaSecurityError
from shared.process import on_stop_signals, setup_logging
from shared.settings import get_settings

log = logging.getLogger("kafkaml.inferencer")


async def _main(spec: ServeSpec, replica: str) -> int:
    stop = asyncio.Event()

    def request_stop(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s received again: exiting now", name)
            logging.shutdown()
            os._exit(128 + signum)
        log.info("%s received: finishing the batch in hand, then stopping", name)
        stop.set()

    on_stop_signals(request_stop)
    settings = get_settings()
    try:
        status = await serve(settings, spec, replica, stop=stop)
    except KafkaSecurityError as exc:  # wrong credentials: said once; a restart would not cure them
        log.error("job %s: %s", spec.job_id, exc.detail)
        return 2
    except Exception:
        log.exception("job %s: the inferencer failed and could not report it", spec.job_id)
        return 1
    return 0 if status == "stopped" else 1


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CPU features, CUDA probing) is not the replica's log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(
        prog="python -m services.inferencer", description="Run one replica of a Kafka-ML inference."
    )
    parser.add_argument("--spec-file", required=True, help="the ServeSpec (JSON): a file, or - for standard input")
    parser.add_argument("--job-id", default=None, help="the job id the spec must have (a check, and for ps)")
    parser.add_argument(
        "--replica",
        default=None,
        help="this replica's name in statuses and statistics (an index, or a pod name; default: the host name)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level)
    replica = args.replica if args.replica is not None else socket.gethostname()
    try:
        spec = read_spec(args.spec_file, ServeSpec, args.job_id)
    except SpecNotFound as exc:
        log.error("%s", exc.detail)
        return 2
    log.info(
        "spec received: job %s, inference %d, result %d, %s, %s → %s, group %s, replica %s",
        spec.job_id, spec.inference_id, spec.result_id, spec.framework, spec.input_topic, spec.output_topic,
        spec.group_id, replica,
    )  # fmt: skip
    return asyncio.run(_main(spec, replica))


if __name__ == "__main__":
    sys.exit(main())
