"""Scale-out benchmark: two inferencer replicas on two partitions against one, model-bound.

Run from the repository root (it starts its own embedded broker)::

    .venv/bin/python tests/perf/bench_scale.py [--messages 5000] [--repeats 2]

The model is heavy enough that the model, not Kafka, is the bottleneck: 8x8
RAW uint8 inputs upsampled to ``--size`` x ``--size`` and through two 3x3
convolutions of ``--filters`` (untrained weights: only the cost matters), ~35
million multiply-adds per input with the defaults, in an artifact of a few
tens of kilobytes: the model's time dwarfs the per-message Kafka work.

Each replica (``python -m services.inferencer``, a real process) is pinned to
one core of its own, as a replica with a one-core limit on Kubernetes: the
measure is what a second replica adds, not how many threads one replica's
framework can use. The replicas start first and join the inference's group;
once every one reports ``running`` and the group settled, the input topic (two
partitions) is filled with ``--messages`` inputs. The rate is outputs over the
time from the first output's timestamp to the last's, as in
``bench_inference.py``; the runs are interleaved and the median is reported.

The machine has two cores, which the broker, the load generator and the reader
share with the replicas: the second replica's core is not free. Target ≥ 1.7x.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "perf"))

from bench_inference import (  # noqa: E402
    fill,
    output_rate,
    settings_for,
    start_replica,
    stop_replica,
    wait_events,
)

from shared.events.inference import InferenceStatusChanged  # noqa: E402
from shared.stack.broker import start_broker  # noqa: E402
from tests.integration.inferencer.serving import keras_bytes, make_topics, publish_model, spec_for, topic_name  # noqa: E402

PARTITIONS = 2


def heavy_model(size: int, filters: int) -> bytes:
    """Much arithmetic, few weights (a small artifact): the 8x8 image upsampled to
    ``size`` x ``size``, two 3x3 convolutions of ``filters``, pooled, Dense 10."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Reshape((8, 8, 1)),
            keras.layers.UpSampling2D(size // 8),
            keras.layers.Conv2D(filters, 3, activation="relu"),
            keras.layers.Conv2D(filters, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    return keras_bytes(model)


def multiply_adds(size: int, filters: int) -> int:
    first = (size - 2) ** 2 * 9 * filters
    return first + (size - 4) ** 2 * 9 * filters * filters + filters * 10


def running_replicas(messages: list[Any]) -> set[str]:
    return {
        m.payload.replica
        for m in messages
        if isinstance(m, InferenceStatusChanged) and m.payload.status == "running" and m.payload.replica
    }


async def scaled(bootstrap: str, artifact: bytes, replicas: int, count: int, logs: Path) -> float:
    settings = settings_for(bootstrap)
    source, sink = topic_name(settings, "in"), topic_name(settings, "out")
    await make_topics(settings, (source, PARTITIONS), (sink, PARTITIONS))
    spec = spec_for(settings, artifact, input_topic=source, output_topic=sink)
    await publish_model(settings, spec, artifact)
    cores = sorted(os.sched_getaffinity(0))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(replicas):
            core = {cores[index % len(cores)]}
            log = logs / f"scale-{replicas}-{index}.log"
            processes.append(start_replica(settings, spec, log, replica=f"r{index}", cpus=core))
        wanted = {f"r{index}" for index in range(replicas)}
        await wait_events(settings, lambda found: running_replicas(found) >= wanted, timeout_s=180)
        # The first replica held both partitions until the second joined: give the group a
        # moment to settle after the last "running".
        await asyncio.sleep(3)
        await fill(settings, source, count)
        return await output_rate(settings, sink, count, timeout_s=600)
    finally:
        for process in processes:
            stop_replica(process)


async def run(bootstrap: str, args: argparse.Namespace, logs: Path) -> None:
    artifact = heavy_model(args.size, args.filters)
    macs = multiply_adds(args.size, args.filters)
    print(
        f"model: two 3x3 convolutions of {args.filters} on {args.size}x{args.size}, {macs:,} multiply-adds per "
        f"input, {len(artifact):,} bytes; logs in {logs}",
        flush=True,
    )
    one: list[float] = []
    two: list[float] = []
    for attempt in range(1, args.repeats + 1):
        one.append(await scaled(bootstrap, artifact, 1, args.messages, logs))
        two.append(await scaled(bootstrap, artifact, 2, args.messages, logs))
        print(
            f"run {attempt}: one replica {one[-1]:,.0f} msg/s, two {two[-1]:,.0f} msg/s "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    one_median, two_median = statistics.median(one), statistics.median(two)
    ratio = two_median / one_median
    print()
    print(f"(load average over the last 15 minutes: {os.getloadavg()[2]:.1f} on {os.cpu_count()} cores)")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| one replica, one partition each ({args.messages:,} inputs, median of {args.repeats}) | "
          f"{one_median:,.0f} msg/s | |")  # fmt: skip
    print(f"| two replicas, two partitions (same) | {two_median:,.0f} msg/s | |")
    holds = "holds" if ratio >= 1.7 else "does not hold"
    print(f"| two / one | {ratio:.2f}x | >= 1.7x: {holds} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="the side the 8x8 input is upsampled to (a multiple of 8)")
    parser.add_argument("--filters", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    home = Path(tempfile.mkdtemp(prefix="kml-scale-", dir="/tmp"))
    (home / "logs").mkdir(parents=True, exist_ok=True)
    with start_broker(home) as broker:
        asyncio.run(run(broker.bootstrap_servers, args, home / "logs"))


if __name__ == "__main__":
    main()
