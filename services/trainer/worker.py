"""One training job, start to end: spec → data → training → artifact → outcome.

The worker has no database credentials: its job spec is handed over by its launcher,
its data and every result travel through Kafka. The steps, each logged on one INFO line:

1. report ``starting`` and ``waiting_data`` for every result of the job;
2. find the control message keyed by the deployment id: one the spec names, or one on the
   control topic since shortly before the job was created (it may come later);
3. read and decode exactly the announced ranges, once, and split them (``reading_data``,
   with the count read so far);
4. report ``training`` (with the data source), train in a thread, report each epoch;
5. publish each model in checksummed chunks, then ``TrainingFinished``.

An incremental deployment (``JobSpec.incremental``), or a control message that says
``incremental: true``, goes instead from step 2 to the window loop of :mod:`.incremental`.

Phases before the first epoch go out as ``TrainingProgress``, so a user sees what the
trainer is doing. Any failure (no data in time, undecodable data, an exception in the
user's code) ends every result of the job with ``TrainingFailed`` and a reason the user
can act on. The job function returns normally either way: a failed training is an
outcome, not a crash of the worker.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from typing import Final

from services.trainer.data import find_control_message, load_training_data
from services.trainer.publishing import ModelResult, Publisher
from shared.errors import WorkloadFailed
from shared.events.training import JobSpec, Progress, ResultStatus, TrainingPhase, TrainingProgress
from shared.kafka import Producer
from shared.process import worker_threads
from shared.settings import Settings

__all__ = ["import_framework", "train_job", "warm_up"]

log = logging.getLogger("kafkaml.trainer")

# Records announced but missing from a partition are waited for this long.
MISSING_DATA_TIMEOUT_S: Final = 30.0


def import_framework(framework: str) -> None:
    importlib.import_module("tensorflow" if framework == "tensorflow" else "torch")


def warm_up(framework: str) -> None:
    """What a warm trainer does before its job comes: the framework imported and set up for the CPU
    (the launcher hands it jobs without GPUs only), and a tiny model trained once, so that the
    one-time start-up of training (kernels, Keras' or Ignite's modules, the first trace) is paid."""
    import numpy as np

    x, y = np.zeros((8, 4), dtype=np.float32), np.zeros((8,), dtype=np.int64)
    if framework == "tensorflow":
        from services.trainer.keras_training import configure_tensorflow

        configure_tensorflow(0, worker_threads())
        import keras

        model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), verbose=0)
        model.evaluate(x, y, verbose=0)
        return
    import torch
    from ignite.engine import create_supervised_evaluator, create_supervised_trainer
    from ignite.metrics import Accuracy
    from torch.utils.data import DataLoader, TensorDataset

    from services.trainer.torch_training import configure_torch

    configure_torch(0, worker_threads())
    net = torch.nn.Linear(4, 2)
    data = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=4)
    create_supervised_trainer(net, torch.optim.Adam(net.parameters()), torch.nn.CrossEntropyLoss()).run(data, 1)
    create_supervised_evaluator(net, metrics={"accuracy": Accuracy()}).run(data)


async def _progress(
    publisher: Publisher, spec: JobSpec, phase: TrainingPhase, detail: str, done: int | None = None,
    total: int | None = None,
) -> None:  # fmt: skip
    for model in spec.models:
        report = Progress(
            result_id=model.result_id, deployment_id=spec.deployment_id, phase=phase, detail=detail, done=done,
            total=total,
        )  # fmt: skip
        await publisher.publish(TrainingProgress(payload=report))


async def train_job(
    settings: Settings,
    spec: JobSpec,
    *,
    missing_data_timeout_s: float = MISSING_DATA_TIMEOUT_S,
    memory_budget: int | None = None,
) -> dict[int, ResultStatus]:
    """Trains a job whose spec is known; publishes its progress and outcome."""
    async with Producer(settings) as producer:
        publisher = Publisher(producer, spec.deployment_id, spec.signing_key)
        publisher.bind_loop()
        await _progress(publisher, spec, "starting", f"trainer started ({spec.framework})")
        for model in spec.models:
            await publisher.status(model.result_id, "waiting_data")
        finished: set[int] = set()
        try:
            await _train(settings, spec, publisher, missing_data_timeout_s, memory_budget, finished)
        except WorkloadFailed as failure:
            reason = failure.detail
        except Exception as exc:  # a bug of ours, or the broker gone: still an answer for the user
            log.exception("job %s failed", spec.job_id)
            reason = f"the trainer failed: {type(exc).__name__}: {exc}"
        else:
            return {m.result_id: "finished" for m in spec.models}
        log.error("job %s failed: %s", spec.job_id, reason)
        for model in spec.models:
            if model.result_id not in finished:  # a result already reported finished stays so
                await publisher.failed(model.result_id, reason)
        return {m.result_id: "finished" if m.result_id in finished else "failed" for m in spec.models}


async def _train(
    settings: Settings,
    spec: JobSpec,
    publisher: Publisher,
    missing_data_timeout_s: float,
    memory_budget: int | None,
    finished: set[int],
) -> None:
    # Importing TensorFlow takes seconds (none in a warm trainer): done while the data is awaited.
    framework = asyncio.create_task(asyncio.to_thread(import_framework, spec.framework))
    log.info(
        "looking for a control message for deployment %d (%d known, then since %s ms; up to %g s)",
        spec.deployment_id, len(spec.announced), spec.control_since_ms, spec.data_timeout_s,
    )  # fmt: skip

    async def waiting() -> None:
        log.info("no data announced for deployment %d yet: waiting for it", spec.deployment_id)
        await _progress(publisher, spec, "waiting_data", "waiting for data (a control message for the deployment)")

    try:
        found = await find_control_message(
            settings, spec.deployment_id, spec.data_timeout_s, known=spec.announced,
            since_ms=spec.control_since_ms, on_waiting=waiting,
        )  # fmt: skip
    finally:
        await framework
    log.info(
        "control message found at %s:%d offset %d: %s, %s",
        found.control_topic,
        found.partition,
        found.offset,
        found.message.input_format,
        found.message.topic,
    )
    if spec.incremental is not None or found.message.incremental:
        from services.trainer.incremental import DEFAULT_PARAMS, train_incremental

        async def progress(phase: TrainingPhase, detail: str) -> None:
            await _progress(publisher, spec, phase, detail)

        await train_incremental(settings, spec, publisher, found, spec.incremental or DEFAULT_PARAMS, progress)
        finished.update(m.result_id for m in spec.models)
        return
    started = time.monotonic()
    budget = spec.cache_mb * 1024 * 1024 if memory_budget is None else memory_budget

    async def reading(done: int, total: int) -> None:
        await _progress(publisher, spec, "reading_data", f"read {done:,} of {total:,} samples", done, total)

    data = await load_training_data(
        settings, found, memory_budget=budget, missing_timeout_s=missing_data_timeout_s, on_progress=reading
    )
    await _progress(publisher, spec, "training", "training: waiting for the first epoch")
    datasource = found.datasource()
    for model in spec.models:
        await publisher.status(model.result_id, "training", datasource)

    def on_epoch(result_id: int, epoch: int, train: dict[str, float], val: dict[str, float]) -> None:
        publisher.publish_from_thread(publisher.epoch_message(result_id, epoch, train, val))

    def train() -> list[ModelResult]:
        if spec.framework == "tensorflow":
            from services.trainer.keras_training import configure_tensorflow, train_keras

            log.info("training on %s", configure_tensorflow(spec.gpus, worker_threads()))
            return train_keras(spec, data, on_epoch)
        from services.trainer.torch_training import configure_torch, train_torch

        device = configure_torch(spec.gpus, worker_threads())
        log.info("training on %s", device)
        return train_torch(spec, data, on_epoch, device=device)

    results = await asyncio.to_thread(train)
    for result in results:
        artifact = await publisher.artifact(result.result_id, result.artifact, result.format)
        training_time = time.monotonic() - started
        await publisher.finished(
            result.result_id,
            test_metrics=result.test_metrics,
            confusion_matrix=result.confusion_matrix,
            training_time=training_time,
            artifact=artifact,
            samples=data.counts,
            datasource=datasource,
        )
        finished.add(result.result_id)
        log.info("result %d finished in %.1f s: %s", result.result_id, training_time, result.test_metrics)
