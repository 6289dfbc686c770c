"""Switch benchmark: latency while a replica switches versions, against its steady state.

Run from the repository root (it starts its own embedded broker)::

    .venv/bin/python tests/perf/bench_switch.py [--rate 500] [--steady-s 6] [--switches 2]

One replica (``python -m services.inferencer``, a real process) serves upstream's
digits model, version 1, on a topic fed at ``--rate`` msg/s by a paced producer that
stamps each input with its send time (a header, copied to the output). Every
``--steady-s`` seconds a switch is published as the orchestrator publishes it (the
other version's chunks, then a ``SwitchModelVersion`` signed with the inference's
key): to version 2, back to 1, and so on (the two versions are the same model trained
for different numbers of epochs: the same size and cost per call).

A reader of the output topic takes now − send time per output and the output's
``kafkaml-model-version``. Inputs sent from a switch's publication to one second after
the replica's ``InferenceVersionChanged`` count as *during a switch*; those sent more
than a second away from any switch as *steady*. Printed: p50 and p99 of both, the
ratio of the p99s, the time from each switch to its change, and that every input was
answered once. The load happens in threads beside the serving loop, which holds the
GIL at times: that, and one acknowledgement's wait at the change, is what a switch
costs the stream. Not a timed test; figures in docs/performance.md.
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

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "perf"))

from aiokafka import AIOKafkaProducer  # noqa: E402
from bench_inference import is_running, settings_for, start_replica, stop_replica, wait_events  # noqa: E402

from shared.artifacts import chunk_artifact  # noqa: E402
from shared.events.inference import ServeSpec  # noqa: E402
from shared.events.signing import Key, Keyring, inference_signer  # noqa: E402
from shared.events.versions import (  # noqa: E402
    MODEL_VERSION_HEADER,
    InferenceVersionChanged,
    SwitchModelVersion,
    VersionSwitch,
)
from shared.kafka import Producer, make_consumer, wait_for_assignment  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.stack.broker import start_broker  # noqa: E402
from tests.integration.inferencer.serving import (  # noqa: E402
    digits,
    keras_digits,
    make_topics,
    publish_model,
    spec_for,
    topic_name,
)

PARTITIONS = 2
MARGIN_S = 1.0


async def publish_switch(settings: Settings, spec: ServeSpec, version: int, artifact: bytes) -> float:
    """The version's chunks, then the signed switch; the time (epoch s) the switch went out."""
    chunks = chunk_artifact(spec.result_id, artifact)
    assert spec.signing_key is not None
    async with Producer(settings) as producer:
        for chunk in chunks:
            await producer.publish(chunk)
        switch = VersionSwitch(
            inference_id=spec.inference_id,
            result_id=spec.result_id,
            version=version,
            sha256=chunks[0].payload.sha256,
            format="keras",
        )
        at = time.time()
        await producer.publish(SwitchModelVersion(payload=switch), signer=Key.of(spec.signing_key))
    return at


async def run(bootstrap: str, args: argparse.Namespace, logs: Path) -> None:
    settings = settings_for(bootstrap)
    versions = {1: keras_digits(), 2: keras_digits(epochs=10)}
    source, sink = topic_name(settings, "in"), topic_name(settings, "out")
    await make_topics(settings, (source, PARTITIONS), (sink, PARTITIONS))
    spec = spec_for(settings, versions[1], input_topic=source, output_topic=sink)
    key = Keyring(["bench-bus-key"]).signing_key(inference_signer(spec.job_id, spec.inference_id))
    spec = spec.model_copy(update={"signing_key": key})
    await publish_model(settings, spec, versions[1])
    process = start_replica(settings, spec, logs / "switch-replica.log")
    count = int(args.rate * args.steady_s * (args.switches + 1))
    seen: dict[int, tuple[float, float, int]] = {}  # input index → (sent at, latency ms, version)
    answers = 0
    try:
        await wait_events(settings, is_running, timeout_s=120)
        reader = make_consumer(settings, sink, group_id=None)
        await reader.start()
        await wait_for_assignment(reader)
        await reader.getmany(timeout_ms=500)

        async def read() -> None:
            nonlocal answers
            while len(seen) < count:
                for records in (await reader.getmany(timeout_ms=1000)).values():
                    now = time.time()
                    for record in records:
                        headers = dict(record.headers)
                        sent = float(headers["sent"])
                        answers += 1
                        version = int(headers[MODEL_VERSION_HEADER])
                        seen[int(record.key)] = (sent, (now - sent) * 1000, version)

        async def switches() -> list[float]:
            published = []
            for n in range(args.switches):
                await asyncio.sleep(args.steady_s)
                target = 2 if n % 2 == 0 else 1
                published.append(await publish_switch(settings, spec, target, versions[target]))
            return published

        reading = asyncio.create_task(read())
        switching = asyncio.create_task(switches())
        images, _ = digits()
        producer = AIOKafkaProducer(bootstrap_servers=settings.brokers, linger_ms=0)
        await producer.start()
        try:
            started = time.monotonic()
            futures = []
            for i in range(count):
                delay = started + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                value = images[i % len(images)].tobytes()
                headers = [("sent", repr(time.time()).encode())]
                futures.append(await producer.send(source, value, key=str(i).encode(), headers=headers))
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        published = await switching
        await asyncio.wait_for(reading, 60)
        await reader.stop()
        events = await wait_events(
            settings,
            lambda found: sum(isinstance(m, InferenceVersionChanged) for m in found) >= args.switches,
            timeout_s=60,
        )
    finally:
        stop_replica(process)
    changed = [t / 1000 for t, m in events if isinstance(m, InferenceVersionChanged)][: args.switches]
    windows = list(zip(published, changed, strict=True))
    steady: list[float] = []
    during: list[float] = []
    for sent, latency, _ in seen.values():
        if any(start <= sent <= end + MARGIN_S for start, end in windows):
            during.append(latency)
        elif all(sent < start - MARGIN_S or sent > end + MARGIN_S for start, end in windows):
            steady.append(latency)
    p50s, p99s = np.percentile(steady, [50, 99])
    p50d, p99d = np.percentile(during, [50, 99])
    load = os.getloadavg()[0]
    print(
        f"\nswitch benchmark at {args.rate:g} msg/s, {args.switches} switches, "
        f"load {load:.1f} on {os.cpu_count()} cores"
    )
    print("| measure | p50 | p99 | inputs |\n|---|---|---|---|")
    print(f"| steady | {p50s:.1f} ms | {p99s:.1f} ms | {len(steady)} |")
    print(f"| during a switch | {p50d:.1f} ms | {p99d:.1f} ms | {len(during)} |")
    print(f"\np99 during a switch / steady: {p99d / p99s:.2f}x")
    print("switch → InferenceVersionChanged: " + ", ".join(f"{end - start:.2f} s" for start, end in windows))
    versions_seen = sorted({v for _, _, v in seen.values()})
    print(f"inputs {count}, answered {len(seen)} distinct, {answers} outputs in all; versions seen {versions_seen}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--steady-s", type=float, default=6.0, help="seconds before, between and after the switches")
    parser.add_argument("--switches", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    home = Path(tempfile.mkdtemp(prefix="kml-bench-", dir="/tmp"))
    (home / "logs").mkdir()
    with start_broker(home) as broker:
        asyncio.run(run(broker.bootstrap_servers, args, home / "logs"))


if __name__ == "__main__":
    main()
