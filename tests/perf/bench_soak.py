"""Soak benchmark: a served digits model under a steady stream, for a long time, on the embedded broker.

Run from the repository root (it starts its own embedded broker)::

    .venv/bin/python tests/perf/bench_soak.py [--minutes 20] [--rate 500]

A paced producer sends ``--rate`` digit images a second, each stamped with its
send time, to an inference served by one real replica (``python -m
services.inferencer``); a reader of the output topic takes now − send time.
Every minute it prints p50 and p99 of that minute and the broker's resident
memory. At the end: the last minute's p50 and p99 as ratios to the first's
(goal: within 1.2x) and the broker's memory at the start and the end (goal: flat
once retention applies). Not a timed test: it does not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaProducer  # noqa: E402
from bench_inference import (  # noqa: E402
    PARTITIONS,
    is_running,
    settings_for,
    start_replica,
    stop_replica,
    wait_events,
)

from shared.kafka import make_consumer, wait_for_assignment  # noqa: E402
from shared.stack.broker import start_broker  # noqa: E402
from tests.integration.inferencer.serving import (  # noqa: E402
    digits,
    keras_digits,
    make_topics,
    publish_model,
    spec_for,
    topic_name,
)


async def soak(bootstrap: str, broker_pid: int, minutes: int, rate: float, linger_ms: int, logs: Path) -> None:
    artifact = keras_digits(10)
    settings = settings_for(bootstrap)
    source, sink = topic_name(settings, "in"), topic_name(settings, "out")
    await make_topics(settings, (source, PARTITIONS), (sink, PARTITIONS))
    spec = spec_for(settings, artifact, input_topic=source, output_topic=sink)
    await publish_model(settings, spec, artifact)
    replica = start_replica(settings, spec, logs / "soak-replica.log")
    broker = psutil.Process(broker_pid)
    per_minute: list[list[float]] = [[] for _ in range(minutes)]
    memory: list[int] = [broker.memory_info().rss]
    started = 0.0
    try:
        await wait_events(settings, is_running, timeout_s=120)
        reader = make_consumer(settings, sink, group_id=None)
        await reader.start()
        await wait_for_assignment(reader)
        await reader.getmany(timeout_ms=500)
        count = int(rate * minutes * 60)
        started = time.monotonic()

        async def read() -> None:
            seen = 0
            while seen < count:
                for records in (await reader.getmany(timeout_ms=1000)).values():
                    now = time.time()
                    for record in records:
                        sent = dict(record.headers).get("sent")
                        if sent is None:
                            continue
                        seen += 1
                        minute = min(int((time.monotonic() - started) // 60), minutes - 1)
                        per_minute[minute].append((now - float(sent)) * 1000)

        reading = asyncio.create_task(read())
        images, _ = digits()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
        await producer.start()
        try:
            reported = 0
            for i in range(count):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await producer.send(
                    source, images[i % len(images)].tobytes(), headers=[("sent", repr(time.time()).encode())]
                )
                minute = int((time.monotonic() - started) // 60)
                if minute > reported:
                    reported = minute
                    memory.append(broker.memory_info().rss)
                    print(line(minute, per_minute[minute - 1], memory[-1]), flush=True)
            await producer.flush()
        finally:
            await producer.stop()
        await asyncio.wait_for(reading, 120)
        await reader.stop()
        memory.append(broker.memory_info().rss)
        print(line(minutes, per_minute[-1], memory[-1]), flush=True)
    finally:
        stop_replica(replica)
    report(per_minute, memory, minutes, rate)


def line(minute: int, latencies: list[float], rss: int) -> str:
    if not latencies:
        return f"minute {minute:>3}: no outputs; broker {rss / 2**20:.0f} MiB"
    p50, p99 = np.percentile(np.asarray(latencies), [50, 99])
    figures = f"{len(latencies):>6} outputs, p50 {p50:6.1f} ms, p99 {p99:6.1f} ms"
    return f"minute {minute:>3}: {figures}; broker {rss / 2**20:.0f} MiB"


def report(per_minute: list[list[float]], memory: list[int], minutes: int, rate: float) -> None:
    first, last = np.asarray(per_minute[0]), np.asarray(per_minute[-1])
    if not len(first) or not len(last):
        print("no outputs to compare")
        return
    first_p50, first_p99 = np.percentile(first, [50, 99])
    last_p50, last_p99 = np.percentile(last, [50, 99])
    print()
    print(f"| soak: {rate:g} msg/s for {minutes} min | first minute | last minute | ratio | goal |")
    print("|---|---|---|---|---|")
    for name, a, b in (("p50", first_p50, last_p50), ("p99", first_p99, last_p99)):
        ratio = b / a
        print(
            f"| {name} latency | {a:.1f} ms | {b:.1f} ms | {ratio:.2f} | "
            f"≤ 1.2: {'holds' if ratio <= 1.2 else 'does NOT hold'} |"
        )
    growth = memory[-1] / memory[0]
    print(
        f"| broker memory | {memory[0] / 2**20:.0f} MiB | {memory[-1] / 2**20:.0f} MiB | {growth:.2f} | flat: "
        f"{'holds' if growth <= 1.2 else 'does NOT hold'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=0,
        help="the producer's linger: 0 sends one record per batch (kafka-python's default)",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    home = Path(tempfile.mkdtemp(prefix="kml-soak-", dir="/tmp"))
    (home / "logs").mkdir()
    with start_broker(home) as broker:
        asyncio.run(soak(broker.bootstrap_servers, broker.pid, args.minutes, args.rate, args.linger_ms, home / "logs"))


if __name__ == "__main__":
    main()
