"""One inference replica, start to end: spec → artifact → model → serve until stopped.

The replica has no database credentials: its spec, its model and its inputs
travel through Kafka. The steps, each logged on one INFO line:

1. take the ``ServeSpec`` handed over (``__main__``); read the jobs topic up to
   its end: the latest ``SwitchModelVersion`` for this inference names the
   version to serve instead of the spec's (:mod:`.switching`). Where that
   version's model is not on the artifacts topic (or fails its checksum), the
   spec's version is served and ``running`` carries the reason, as a failed
   live switch keeps the version it had;
2. read the model's chunks from the artifacts topic, check the SHA-256, load
   it (GPU only where asked for and present), call it once to warm it up;
3. join the consumer group ``spec.group_id`` on the input topic (every
   replica shares it) and report ``running`` once we hold partitions;
4. serve (:mod:`.serving`): micro-batches → one decode and one model call per
   batch → one output per input (:mod:`.routing`) → commit;
5. every ``stats_interval_s``, an ``InferenceStats`` (:mod:`.stats`); every
   switch that arrives on the jobs topic meanwhile loads beside the serving
   model and takes over between two micro-batches (:mod:`.switching`);
6. on a stop request (SIGTERM): finish the batches in hand, commit, leave the
   group, report ``stopped``.

A failure to start (no artifact in time, a checksum or load error, a model
that does not fit the stream) ends in ``failed`` with the reason. Bad inputs
never do: they go to the dead-letter topic with the reason, and the stream
goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from services.inferencer.events import ReplicaEvents
from services.inferencer.model import (
    ARTIFACT_TIMEOUT_S,
    ServedModel,
    check_outputs,
    configure_device,
    fetch_artifact,
    load_model,
    warm_up,
)
from services.inferencer.serving import Inferencer
from services.inferencer.switching import Switcher, SwitchListener, switched
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
# A switch names a version already published: its chunks are on the topic, the wait is short.
SWITCHED_ARTIFACT_TIMEOUT_S: Final = 10.0


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
    # Importing the framework takes seconds: done while the jobs topic and the artifact are read.
    device_task = asyncio.create_task(asyncio.to_thread(configure_device, spec.framework, spec.gpus, worker_threads()))
    listener = SwitchListener(settings, spec, producer)
    tasks: list[asyncio.Task[None]] = []
    start_error: str | None = None
    try:
        try:
            latest = await listener.replay()
            serving, artifact = spec, None
            if latest is not None:
                log.info("the jobs topic's latest switch names version %d: serving it", latest.version)
                wanted = switched(spec, latest)
                try:
                    timeout_s = min(artifact_timeout_s, SWITCHED_ARTIFACT_TIMEOUT_S)
                    artifact = await fetch_artifact(settings, wanted, timeout_s, stop)
                    serving = wanted
                except WorkloadFailed as exc:
                    start_error = (
                        f"could not switch to version {latest.version}, serving version {spec.model_version} "
                        f"(the deployment's): {exc.detail}"
                    )
                    log.error("%s", start_error)
            if artifact is None and not stop.is_set():
                artifact = await fetch_artifact(settings, serving, artifact_timeout_s, stop)
        finally:
            device = await device_task
        if artifact is None:
            return
        model = await asyncio.to_thread(load_model, serving, artifact, device)
        decoder = _decoder(serving, model)
        outputs, seconds = await asyncio.to_thread(warm_up, model, decoder)
        log.info(
            "model loaded: version %d, %s; inputs %s %s",
            serving.model_version, model.describe(), spec.input_format, decoder.describe(),
        )  # fmt: skip
        distributed = spec.upper_topic is not None and spec.limit is not None
        if (spec.upper_topic is None) != (spec.limit is None):
            log.warning("upper_topic and limit go together: without both, every prediction goes to the output topic")
        if distributed:
            check_outputs(outputs, distributed=True)
            log.info("distributed: below %g the first output goes up to %s", spec.limit, spec.upper_topic)
        if stop.is_set():
            return
        if serving.model_version != spec.model_version:
            await events.version_changed(serving.model_version)
        inferencer = Inferencer(
            settings, spec, replica, producer, model, decoder,
            distributed=distributed, events=events, version=serving.model_version,
        )  # fmt: skip
        inferencer.model_seconds = seconds
        switcher = Switcher(
            settings, serving, device=device, decoder=decoder, distributed=distributed, events=events, stop=stop,
            artifact_timeout_s=artifact_timeout_s,
        )  # fmt: skip
        tasks.append(asyncio.create_task(listener.listen(switcher.request, stop)))
        tasks.append(asyncio.create_task(switcher.run(inferencer)))
        await inferencer.run(stop, lambda: events.status("running", start_error))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # the broker gone: nothing left to leave
            await listener.close()
