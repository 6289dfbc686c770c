"""One inference replica, start to end: spec → artifact → model → serve until stopped.

The replica has no database credentials: its spec, its model and its inputs
travel through Kafka. The steps, each logged on one INFO line:

1. read the ``ServeModel`` with our job id from the jobs topic (:mod:`.spec`);
2. read the model's chunks from the artifacts topic, check the SHA-256, load
   it (GPU only where asked for and present), call it once to warm it up;
3. join the consumer group ``spec.group_id`` on the input topic (every
   replica shares it) and report ``running`` once we hold partitions;
4. serve (:mod:`.serving`): micro-batches → one decode and one model call per
   batch → one output per input (:mod:`.routing`) → commit;
5. every ``stats_interval_s``, an ``InferenceStats`` (:mod:`.stats`);
6. on a stop request (SIGTERM): finish the batches in hand, commit, leave the
   group, report ``stopped``.

A failure to start (no artifact in time, a checksum or load error, a model
that does not fit the stream) ends in ``failed`` with the reason. Bad inputs
never do: they go to the dead-letter topic with the reason, and the stream
goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

import numpy as np

from services.inferencer.events import ReplicaEvents
from services.inferencer.model import (
    ARTIFACT_TIMEOUT_S,
    ServedModel,
    configure_device,
    fetch_artifact,
    load_model,
)
from services.inferencer.serving import Inferencer
from shared.codecs import Decoder, decoder_for
from shared.errors import WorkloadFailed
from shared.events.inference import InferenceStatus, ServeSpec
from shared.kafka import Producer
from shared.process import worker_threads
from shared.settings import Settings

__all__ = ["serve"]

log = logging.getLogger("kafkaml.inferencer")

# A producer record batch per output partition holds up to this much (one future each).
_RECORD_BATCH_BYTES: Final = 1024 * 1024


def _decoder(spec: ServeSpec, model: ServedModel) -> Decoder:
    config = dict(spec.input_config)
    shape = model.fixed_shape()
    if spec.input_format == "JSON" and not config.get("data_reshape") and shape is not None:
        # Without it the first sample would fix the stream's shape, right or wrong.
        config["data_reshape"] = " ".join(str(d) for d in shape) or "1"
    try:
        return decoder_for(spec.input_format, config)
    except ValueError as exc:
        raise WorkloadFailed(f"input_config does not describe {spec.input_format} values: {exc}") from None


def _warm_up(model: ServedModel, decoder: Decoder) -> tuple[int | None, float]:
    """Calls the model on one zero sample (traces it, checks it takes the stream's samples).

    (number of outputs, seconds of a warm call); no outputs count when the sample shape is
    not known before data arrives (Avro, JSON without a shape).
    """
    shape = decoder.sample_shape
    if shape is None:
        shape = model.fixed_shape()
    if shape is None:
        return None, 0.0
    sample = np.zeros((1, *shape), dtype=np.float32)
    try:
        model.predict(model.prepare(sample))
        started = time.perf_counter()
        outputs = model.predict(model.prepare(sample))
    except Exception as exc:
        raise WorkloadFailed(
            f"the model does not take the stream's samples ({decoder.describe()}): {type(exc).__name__}: {exc}"
        ) from None
    return len(outputs), time.perf_counter() - started


async def serve(
    settings: Settings,
    spec: ServeSpec,
    replica: str,
    *,
    stop: asyncio.Event,
    artifact_timeout_s: float = ARTIFACT_TIMEOUT_S,
) -> InferenceStatus:
    """Serves the spec until ``stop`` is set; the final status ("stopped" or "failed"), also published."""
    # No linger: a micro-batch's outputs are whole record batches already, waiting adds latency only.
    async with Producer(settings, max_batch_size=_RECORD_BATCH_BYTES, linger_ms=0) as producer:
        events = ReplicaEvents(producer, settings, spec, replica)
        try:
            await _serve(settings, spec, replica, producer, events, stop, artifact_timeout_s)
        except WorkloadFailed as failure:
            reason = failure.detail
        except Exception as exc:  # a bug of ours, or the broker gone: still an answer for the user
            log.exception("inference %d failed", spec.inference_id)
            reason = f"the inferencer failed: {type(exc).__name__}: {exc}"
        else:
            await events.status("stopped")
            return "stopped"
        log.error("inference %d failed: %s", spec.inference_id, reason)
        await events.status("failed", reason)
        return "failed"


async def _serve(
    settings: Settings,
    spec: ServeSpec,
    replica: str,
    producer: Producer,
    events: ReplicaEvents,
    stop: asyncio.Event,
    artifact_timeout_s: float,
) -> None:
    # Importing the framework takes seconds: done while the artifact is read.
    device_task = asyncio.create_task(asyncio.to_thread(configure_device, spec.framework, spec.gpus, worker_threads()))
    try:
        artifact = await fetch_artifact(settings, spec, artifact_timeout_s, stop)
    finally:
        device = await device_task
    if artifact is None:
        return
    model = await asyncio.to_thread(load_model, spec, artifact, device)
    decoder = _decoder(spec, model)
    outputs, seconds = await asyncio.to_thread(_warm_up, model, decoder)
    log.info("model loaded: %s; inputs %s %s", model.describe(), spec.input_format, decoder.describe())
    distributed = spec.upper_topic is not None and spec.limit is not None
    if (spec.upper_topic is None) != (spec.limit is None):
        log.warning("upper_topic and limit go together: without both, every prediction goes to the output topic")
    if distributed:
        if outputs is not None and outputs < 2:
            raise WorkloadFailed(
                "a distributed inference needs a model with two outputs (to the upper model, prediction); "
                f"this one has {outputs}"
            )
        log.info("distributed: below %g the first output goes up to %s", spec.limit, spec.upper_topic)
    if stop.is_set():
        return
    inferencer = Inferencer(settings, spec, replica, producer, model, decoder, distributed=distributed, events=events)
    inferencer.model_seconds = seconds
    await inferencer.run(stop, lambda: events.status("running"))
