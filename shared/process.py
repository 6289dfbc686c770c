"""Process set-up every entry point shares: logging, threads, stop signals, back-off, truncation.

One copy of each, so that every service and worker logs in the same format,
stops on the same signals and retries with the same delays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Libraries whose routine chatter (subscriptions, rebalances, connections) is not a service's log.
NOISY_LOGGERS = ("aiokafka", "kafka")


def setup_logging(level: str | int = "INFO", *, quiet: tuple[str, ...] = NOISY_LOGGERS) -> None:
    """One log line format for every process, on stderr (the stack's supervisor files it)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    for name in quiet:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def worker_threads(limit: int = 4) -> int:
    """Threads a framework may use in one worker: the cores, at most ``limit``."""
    return max(1, min(limit, os.cpu_count() or 1))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signals(callback: Callable[[int], object], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Calls ``callback(signum)`` on the event loop when SIGTERM or SIGINT arrives."""
    loop = loop or asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, callback, signum)


@dataclass(frozen=True)
class Backoff:
    """Delays between tries: ``initial`` doubling up to ``maximum``.

    Something that stayed healthy ``reset_after`` seconds starts again from
    ``initial`` (the supervisor uses that for restarts).
    """

    initial: float = 0.2
    maximum: float = 30.0
    reset_after: float = 60.0

    def following(self, delay: float) -> float:
        return min(delay * 2, self.maximum)

    def delays(self) -> Iterator[float]:
        """``initial``, twice that, … capped at ``maximum``, forever."""
        delay = self.initial
        while True:
            yield delay
            delay = self.following(delay)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


async def every(interval_s: float, step: Callable[[], Awaitable[object]], *, what: str) -> None:
    """Runs ``step`` every ``interval_s`` seconds, for ever; a failure is logged and the next
    round tries again (housekeeping must never stop the service it runs in)."""
    log = logging.getLogger("kafkaml.housekeeping")
    while True:
        await asyncio.sleep(interval_s)
        try:
            await step()
        except Exception as exc:
            log.warning("%s failed (%s: %s); trying again in %.0f s", what, type(exc).__name__, exc, interval_s)
