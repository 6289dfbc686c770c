"""One model kept across the windows of an incremental training: evaluate, train, save, restore.

The model is built from the job's code by the same functions the bounded trainers use, and kept
(with its optimizer's state) from window to window. Everything here blocks: the trainer calls it
in a thread. A restart restores the model from the bytes of its last checkpoint: Keras loads the
``.keras`` file in safe mode (no code from the file runs; a model that safe mode refuses is built
from its code again and given the saved weights), PyTorch loads the state dict with
``weights_only=True`` into the module the code builds (the optimizer starts afresh).
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from services.trainer.keras_training import _OWNED_EVALUATE, _OWNED_FIT, _build, _export, _input_dtype, _kwargs
from services.trainer.publishing import split_epoch_logs
from services.trainer.torch_training import _LOADER_OPTIONS, _metrics, _user_call
from shared.errors import WorkloadFailed
from shared.events.catalog import ModelDefinition
from shared.events.training import JobModel, JobSpec
from shared.process import worker_threads
from shared.usercode import ModelCodeError, build_model, failure_message

__all__ = ["Learner", "make_learner"]

log = logging.getLogger("kafkaml.trainer")

Array = np.ndarray[Any, Any]
Metrics = dict[str, float]


class Learner(Protocol):
    format: Literal["keras", "pt"]

    def evaluate(self, x: Array, y: Array) -> Metrics: ...

    def train(self, x: Array, y: Array, x_val: Array, y_val: Array) -> tuple[Metrics, Metrics]: ...

    def export(self) -> bytes: ...


def _epochs(fit: Mapping[str, Any], *names: str) -> int:
    for name in names:
        if name in fit:
            return int(fit[name])
    return 1  # one pass over each window unless the deployment says otherwise


def _step(what: str, run: Any) -> Any:
    try:
        return run()
    except WorkloadFailed:
        raise
    except Exception as exc:
        raise WorkloadFailed(failure_message(what, exc)) from exc


class KerasLearner:
    format: Literal["keras", "pt"] = "keras"

    def __init__(self, spec: JobSpec, job_model: JobModel, saved: bytes | None) -> None:
        self.spec = spec
        self.model = self._restore(job_model, saved) if saved is not None else _build(job_model)
        self.x_dtype = _input_dtype(self.model)
        fit = _kwargs(spec.fit, _OWNED_FIT, "fit")
        self.fit = {"batch_size": spec.batch_size, "verbose": 0, **fit, "epochs": _epochs(fit, "epochs")}
        self.evaluate_kwargs = {
            "batch_size": spec.batch_size,
            "verbose": 0,
            **_kwargs(spec.evaluate, _OWNED_EVALUATE, "evaluate"),
        }

    @staticmethod
    def _restore(job_model: JobModel, saved: bytes) -> Any:
        import keras

        with tempfile.TemporaryDirectory(prefix="kafkaml-resume-") as folder:
            path = Path(folder) / "model.keras"
            path.write_bytes(saved)
            try:
                return keras.models.load_model(path, safe_mode=True)
            except Exception as exc:  # e.g. a Lambda layer, which safe mode refuses
                log.warning("the checkpoint does not load in safe mode (%s): building the model for its weights", exc)
                model = _build(job_model)
                _step("loading the checkpoint's weights", lambda: model.load_weights(path))
                return model

    def evaluate(self, x: Array, y: Array) -> Metrics:
        inputs = x.astype(self.x_dtype, copy=False)
        found = _step(
            "model.evaluate", lambda: self.model.evaluate(inputs, y, return_dict=True, **self.evaluate_kwargs)
        )
        metrics, _ = split_epoch_logs(dict(found))
        return metrics

    def train(self, x: Array, y: Array, x_val: Array, y_val: Array) -> tuple[Metrics, Metrics]:
        kwargs = dict(self.fit)
        if len(x_val):
            kwargs["validation_data"] = (x_val.astype(self.x_dtype, copy=False), y_val)
        history = _step("model.fit", lambda: self.model.fit(x.astype(self.x_dtype, copy=False), y, **kwargs))
        last = {name: values[-1] for name, values in history.history.items() if values}
        return split_epoch_logs(last)

    def export(self) -> bytes:
        data: bytes = _step("model.save", lambda: _export(self.model))
        return data


class TorchLearner:
    format: Literal["keras", "pt"] = "pt"

    def __init__(self, spec: JobSpec, job_model: JobModel, saved: bytes | None, device: str) -> None:
        import torch

        self.spec = spec
        self.device = device
        definition = ModelDefinition(
            name=job_model.name, framework="pytorch", code=job_model.code, imports=job_model.imports
        )
        try:
            model, _ = build_model(definition)
        except ModelCodeError as exc:
            raise WorkloadFailed(failure_message(f"model {job_model.name!r} could not be built", exc)) from None
        if saved is not None:
            state = torch.load(io.BytesIO(saved), weights_only=True)
            _step("loading the checkpoint's state dict", lambda: model.load_state_dict(state))
        self.model = model.to(device)
        self.loss_fn = _user_call(self.model, "loss_fn")
        self.optimizer = _user_call(self.model, "optimizer")
        self.metrics = _user_call(self.model, "metrics")
        self.classification = isinstance(self.loss_fn, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss))
        self.epochs = _epochs(spec.fit, "max_epochs", "epochs")
        self.loader_options = {k: v for k, v in spec.fit.items() if k in _LOADER_OPTIONS and k != "num_workers"}
        self.column: bool | None = None  # float labels (n,) for outputs (n, 1): found on the first window

    def _tensors(self, x: Array, y: Array) -> tuple[Any, Any]:
        import torch

        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.classification:
            labels = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
            if labels.ndim > 1 and labels.shape[-1] == 1:
                labels = labels.reshape(len(labels))
            return inputs, labels
        labels = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        if self.column is None:
            with torch.no_grad():
                probe = _step("model.forward", lambda: self.model(inputs[:2].to(self.device)))
            self.column = getattr(probe, "ndim", 0) == 2 and probe.shape[1] == 1 and labels.ndim == 1
        return inputs, labels.reshape(-1, 1) if self.column and labels.ndim == 1 else labels

    def _loader(self, x: Array, y: Array, *, train: bool) -> Any:
        from torch.utils.data import DataLoader, TensorDataset

        options = {**self.loader_options, "shuffle": self.loader_options.get("shuffle", True) if train else False}
        if not train:
            options.pop("drop_last", None)
        return DataLoader(TensorDataset(*self._tensors(x, y)), batch_size=self.spec.batch_size, **options)

    def _evaluate(self, loader: Any) -> Metrics:
        from ignite.engine import create_supervised_evaluator

        evaluator = create_supervised_evaluator(self.model, metrics=self.metrics, device=self.device)
        return _metrics(evaluator.run(loader).metrics)

    def evaluate(self, x: Array, y: Array) -> Metrics:
        found: Metrics = _step("evaluating the window", lambda: self._evaluate(self._loader(x, y, train=False)))
        return found

    def train(self, x: Array, y: Array, x_val: Array, y_val: Array) -> tuple[Metrics, Metrics]:
        from ignite.engine import create_supervised_trainer

        # A fresh engine per window (an engine that finished its epochs would not run again); the
        # model and its optimizer, with its state, are the same.
        trainer = create_supervised_trainer(self.model, self.optimizer, self.loss_fn, device=self.device)
        _step("training", lambda: trainer.run(self._loader(x, y, train=True), max_epochs=self.epochs))
        train = self.evaluate(x, y)
        val = self.evaluate(x_val, y_val) if len(x_val) else {}
        return train, val

    def export(self) -> bytes:
        import torch

        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, buffer)
        return buffer.getvalue()


def make_learner(spec: JobSpec, saved: bytes | None) -> Learner:
    """The job's one model, new or restored (blocking: imports the framework)."""
    if spec.framework == "tensorflow":
        from services.trainer.keras_training import configure_tensorflow

        log.info("training on %s", configure_tensorflow(spec.gpus, worker_threads()))
        return KerasLearner(spec, spec.models[0], saved)
    from services.trainer.torch_training import configure_torch

    device = configure_torch(spec.gpus, worker_threads())
    log.info("training on %s", device)
    return TorchLearner(spec, spec.models[0], saved, device)
