"""Run one replica of an inference until it is stopped::

    KAFKAML_BOOTSTRAP_SERVERS=… python -m services.inferencer --job-id <id> --replica <n>

Exit status: 0 after a stop request (SIGTERM or SIGINT: the batch in hand is
finished and committed, the group left, ``stopped`` published); 1 when the
inference failed (no artifact in time, a checksum or load error, the broker
gone: ``failed`` published with the reason where the broker still answers);
2 when no ``ServeModel`` with that job id was found (nothing is published:
there is no inference to attribute it to). A second stop request ends the
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

from services.inferencer.replica import run_inference
from shared.errors import SpecNotFound
from shared.process import on_stop_signals, setup_logging
from shared.settings import get_settings

log = logging.getLogger("kafkaml.inferencer")


async def _main(job_id: str, replica: str) -> int:
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
        status = await run_inference(settings, job_id, replica, stop=stop)
    except SpecNotFound as exc:
        log.error("%s", exc.detail)
        return 2
    except Exception:
        log.exception("job %s: the inferencer failed and could not report it", job_id)
        return 1
    return 0 if status == "stopped" else 1


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CPU features, CUDA probing) is not the replica's log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(
        prog="python -m services.inferencer", description="Run one replica of a Kafka-ML inference."
    )
    parser.add_argument("--job-id", required=True, help="the job_id of a ServeModel on the jobs topic")
    parser.add_argument(
        "--replica",
        default=None,
        help="this replica's name in statuses and statistics (an index, or a pod name; default: the host name)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level)
    replica = args.replica if args.replica is not None else socket.gethostname()
    return asyncio.run(_main(args.job_id, replica))


if __name__ == "__main__":
    sys.exit(main())
