"""PyTorch: train with Ignite, evaluate, confusion matrix, export the state dict.

The user's module defines ``loss_fn()``, ``optimizer()`` and ``metrics()``
(a dict of Ignite metrics), as in upstream Kafka-ML. ``spec.fit`` takes
``max_epochs`` (``epochs`` is accepted too), ``epoch_length``, and DataLoader
options (``shuffle``, ``num_workers``, ``drop_last``...); the batch size is
the deployment's. After each epoch the metrics are computed on the training
and validation sets and reported; the test metrics come from the same
evaluator on the test set. Labels are class indices (int64) for
CrossEntropyLoss/NLLLoss, float32 otherwise.

Blocking: run it in a thread. The artifact is ``torch.save`` of the state
dict (tensors on the CPU), which loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import numpy as np

from services.trainer.data import Part, TrainingData
from services.trainer.publishing import ModelResult, confusion_matrix, split_epoch_logs
from shared.errors import WorkloadFailed
from shared.events.catalog import ModelDefinition
from shared.events.training import JobSpec
from shared.usercode import ModelCodeError, build_model, failure_message

__all__ = ["EpochReport", "configure_torch", "train_torch"]

log = logging.getLogger("kafkaml.trainer")

EpochReport = Callable[[int, int, dict[str, float], dict[str, float]], None]

_LOADER_OPTIONS: Final = frozenset(
    {"shuffle", "num_workers", "drop_last", "pin_memory", "timeout", "prefetch_factor", "persistent_workers"}
)
_RUN_OPTIONS: Final = frozenset({"max_epochs", "epochs", "epoch_length"})


def configure_torch(gpus: int, threads: int) -> str:
    """The device to train on: 'cuda' when GPUs were asked for and one is present, else 'cpu'."""
    import torch

    torch.set_num_threads(threads)
    if gpus > 0:
        if torch.cuda.is_available():
            return "cuda"
        log.warning("%d GPU(s) asked for but none is present: training on the CPU", gpus)
    return "cpu"


def _metrics(values: Mapping[str, Any]) -> dict[str, float]:
    found, _ = split_epoch_logs({k: v.detach().cpu().numpy() if hasattr(v, "detach") else v for k, v in values.items()})
    return found


def _user_call(model: Any, name: str) -> Any:
    try:
        return getattr(model, name)()
    except Exception as exc:
        raise WorkloadFailed(failure_message(f"model.{name}()", exc)) from None


def train_torch(spec: JobSpec, data: TrainingData, on_epoch: EpochReport, *, device: str = "cpu") -> list[ModelResult]:
    """Trains the job's one PyTorch model; blocking: run it in a thread."""
    import torch
    from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
    from torch.utils.data import DataLoader, IterableDataset, TensorDataset

    if len(spec.models) != 1:
        raise WorkloadFailed("distributed (chained) training is for TensorFlow models only")
    job_model = spec.models[0]
    definition = ModelDefinition(
        name=job_model.name, framework="pytorch", code=job_model.code, imports=job_model.imports
    )
    try:
        model, _ = build_model(definition)
    except ModelCodeError as exc:
        raise WorkloadFailed(failure_message(f"model {job_model.name!r} could not be built", exc)) from None
    model = model.to(device)
    loss_fn = _user_call(model, "loss_fn")
    optimizer = _user_call(model, "optimizer")
    classification = isinstance(loss_fn, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss))

    fit = dict(spec.fit)
    unknown = sorted(set(fit) - _LOADER_OPTIONS - _RUN_OPTIONS)
    if unknown:
        log.warning("fit: ignoring %s (not options of the PyTorch trainer)", ", ".join(unknown))
    max_epochs = int(fit.get("max_epochs", fit.get("epochs", 1)))
    epoch_length = fit.get("epoch_length")
    loader_options = {k: v for k, v in fit.items() if k in _LOADER_OPTIONS}
    streamed = data.arrays("train") is None
    column = [False]  # labels of shape (n,) for a model whose output is (n, 1): found on the first batch

    def tensors(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> tuple[Any, Any]:
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if classification:
            labels = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
            if labels.ndim > 1 and labels.shape[-1] == 1:
                labels = labels.reshape(len(labels))
        else:
            labels = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
            if column[0] and labels.ndim == 1:
                labels = labels.reshape(-1, 1)
        return inputs, labels

    # A float label of shape (n,) against an output of shape (n, 1) would broadcast to (n, n).
    if not classification and data.size("train") > 0:
        x_probe, y_probe = next(iter(data.batches("train", 2)))
        with torch.no_grad():
            try:
                probe = model(torch.from_numpy(np.ascontiguousarray(x_probe, dtype=np.float32)).to(device))
            except Exception as exc:
                raise WorkloadFailed(failure_message("model.forward", exc)) from None
        column[0] = getattr(probe, "ndim", 0) == 2 and probe.shape[1] == 1 and y_probe.ndim == 1

    class Streamed(IterableDataset[tuple[Any, Any]]):
        """Batches re-read from Kafka on every pass."""

        def __init__(self, part: Part) -> None:
            self.part = part

        def __iter__(self) -> Iterator[tuple[Any, Any]]:
            for x, y in data.batches(self.part, spec.batch_size):
                yield tensors(x, y)

    def loader(part: Part, *, train: bool) -> Any:
        if streamed:
            return DataLoader(Streamed(part), batch_size=None)
        arrays = data.arrays(part)
        assert arrays is not None
        options = {**loader_options, "shuffle": loader_options.get("shuffle", True) if train else False}
        if not train:
            options.pop("drop_last", None)
        return DataLoader(TensorDataset(*tensors(*arrays)), batch_size=spec.batch_size, **options)

    train_loader = loader("train", train=True)
    train_eval_loader = loader("train", train=False)
    val_loader = loader("validation", train=False) if data.size("validation") else None
    test_loader = loader("test", train=False) if data.size("test") else None

    trainer = create_supervised_trainer(model, optimizer, loss_fn, device=device)
    evaluator = create_supervised_evaluator(model, metrics=_user_call(model, "metrics"), device=device)

    @trainer.on(Events.EPOCH_COMPLETED)
    def report(engine: Any) -> None:
        train = _metrics(evaluator.run(train_eval_loader).metrics)
        val = _metrics(evaluator.run(val_loader).metrics) if val_loader is not None else {}
        epoch = int(engine.state.epoch)
        log.info("result %d: epoch %d: %s val %s", job_model.result_id, epoch, train, val)
        on_epoch(job_model.result_id, epoch, train, val)

    try:
        trainer.run(train_loader, max_epochs=max_epochs, epoch_length=epoch_length)
    except WorkloadFailed:
        raise
    except Exception as exc:
        raise WorkloadFailed(failure_message("training", exc)) from exc

    try:
        test_metrics = _metrics(evaluator.run(test_loader).metrics) if test_loader is not None else {}
    except Exception as exc:
        raise WorkloadFailed(failure_message("evaluating on the test set", exc)) from exc
    log.info("result %d: test metrics %s", job_model.result_id, test_metrics)

    matrix = None
    if spec.confusion_matrix and test_loader is not None:
        outputs, labels = [], []
        model.eval()
        with torch.no_grad():
            for x, y in data.batches("test", spec.batch_size):
                found = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
                outputs.append(found.detach().cpu().numpy())
                labels.append(y)
        matrix = confusion_matrix(np.concatenate(outputs), np.concatenate(labels))

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return [ModelResult(job_model.result_id, test_metrics, matrix, buffer.getvalue(), "pt")]
