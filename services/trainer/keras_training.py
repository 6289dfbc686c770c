"""TensorFlow/Keras: fit, evaluate, confusion matrix, export; one model or a distributed chain.

Everything here is synchronous and runs in a training thread (Keras blocks);
progress leaves through the ``on_epoch`` callback, which the worker makes
publish on the event loop and wait for the acknowledgement.

The user's code builds *and compiles* the model; ``spec.fit`` and
``spec.evaluate`` are passed to ``model.fit``/``model.evaluate`` as keyword
arguments (Keras' own vocabulary), except the ones the trainer owns (the
data, the callbacks).

A distributed chain (edge → fog → cloud, linked by ``upper_model_id``) is
trained jointly, as upstream Kafka-ML does: the bottom model takes the input,
each model's first output feeds the next model up, and every model's last
output is a prediction head with its own loss. The joint model is compiled
with ``spec.distributed`` and each sub-model is saved on its own.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np

from services.trainer.data import Part, TrainingData
from services.trainer.publishing import ModelResult, confusion_matrix, split_epoch_logs
from shared.errors import WorkloadFailed
from shared.events.catalog import ModelDefinition
from shared.events.training import DistributedParams, JobModel, JobSpec
from shared.usercode import ModelCodeError, build_model, failure_message

__all__ = ["EpochReport", "chain_order", "configure_tensorflow", "train_keras"]

log = logging.getLogger("kafkaml.trainer")

# (result_id, epoch from 1, train metrics, validation metrics)
EpochReport = Callable[[int, int, dict[str, float], dict[str, float]], None]

# Keyword arguments the trainer sets itself: a user's value would break the job.
_OWNED_FIT: Final = frozenset({"x", "y", "callbacks", "validation_data"})
_OWNED_EVALUATE: Final = frozenset({"x", "y", "callbacks", "return_dict"})
# Evaluation and prediction batches (evaluation_batch).
EVAL_BATCH_MAX: Final = 1024
EVAL_BATCH_BYTES: Final = 32 * 2**20


def configure_tensorflow(gpus: int, threads: int) -> str:
    """Hides the GPUs when none was asked for; 'GPU' or 'CPU' for the log."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, threads // 2))
    except RuntimeError:  # TensorFlow already started in this process (tests run jobs in-process)
        pass
    found = tf.config.list_physical_devices("GPU")
    if gpus == 0:
        with contextlib.suppress(RuntimeError):
            tf.config.set_visible_devices([], "GPU")
        return "CPU"
    if not found:
        log.warning("%d GPU(s) asked for but none is present: training on the CPU", gpus)
        return "CPU"
    try:
        tf.config.set_visible_devices(found[:gpus], "GPU")
        for gpu in found[:gpus]:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass
    return f"GPU ({min(gpus, len(found))} of {len(found)})"


def _kwargs(user: Mapping[str, Any], owned: frozenset[str], what: str) -> dict[str, Any]:
    ignored = sorted(k for k in user if k in owned)
    if ignored:
        log.warning("%s: ignoring %s (the trainer sets these)", what, ", ".join(ignored))
    return {k: v for k, v in user.items() if k not in owned}


def _build(model: JobModel, *, require_compiled: bool = True) -> Any:
    definition = ModelDefinition(name=model.name, framework="tensorflow", code=model.code, imports=model.imports)
    try:
        built, _ = build_model(definition, require_compiled=require_compiled)
    except ModelCodeError as exc:
        raise WorkloadFailed(failure_message(f"model {model.name!r} could not be built", exc)) from None
    return built


def _declared_input(model: Any) -> tuple[str | None, int | None]:
    """The dtype and the batch size of the model's first declared input (None, None: it declares
    none, as a subclassed model; a batch size only where the model was built for one)."""
    try:
        declared = model.inputs[0]
        return str(declared.dtype), (int(declared.shape[0]) if declared.shape[0] else None)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None, None


def _input_dtype(model: Any) -> str:
    """What the model's input takes: integer inputs (token ids) stay integers, all else is float32."""
    dtype, _ = _declared_input(model)
    return dtype if dtype is not None and dtype.startswith(("int", "uint", "float")) else "float32"


def evaluation_batch(spec: JobSpec, sample_shape: tuple[int, ...], fixed: int | None = None) -> int:
    """The batch of evaluate and predict: their results do not depend on it, their time does (a
    call per batch), so up to :data:`EVAL_BATCH_MAX` samples of at most :data:`EVAL_BATCH_BYTES`
    of float32 input, never below the training batch; ``fixed``, a model's own batch size, wins."""
    if fixed:
        return fixed
    sample_bytes = 4 * int(np.prod(sample_shape, dtype=np.int64)) if sample_shape else 4
    return max(spec.batch_size, min(EVAL_BATCH_MAX, EVAL_BATCH_BYTES // max(1, sample_bytes)))


def _float_dict(values: Mapping[str, Any]) -> dict[str, float]:
    train, _ = split_epoch_logs(values)
    return train


def chain_order(models: list[JobModel]) -> list[JobModel]:
    """The models of a distributed chain from the bottom (edge) up; WorkloadFailed when they are no chain."""
    by_id = {m.model_id: m for m in models}
    uppers = {m.upper_model_id for m in models}
    bottoms = [m for m in models if m.model_id not in uppers]
    if len(bottoms) != 1:
        raise WorkloadFailed("the models of a distributed job must form one chain linked by upper_model_id")
    order = [bottoms[0]]
    while order[-1].upper_model_id is not None:
        upper = by_id.get(order[-1].upper_model_id)
        if upper is None or upper in order:
            break
        order.append(upper)
    if len(order) != len(models):
        raise WorkloadFailed("the models of a distributed job must form one chain linked by upper_model_id")
    return order


class _Run:
    """One training run: data preparation shared by the single and the distributed case."""

    def __init__(self, spec: JobSpec, data: TrainingData, model: Any) -> None:
        self.spec = spec
        self.data = data
        dtype, fixed = _declared_input(model)
        self.x_dtype = _input_dtype(model)
        # A declared floating input is converted by Keras batch by batch: integer data (uint8
        # pixels) goes as it is, with no float copy of the whole set (four times its size).
        self.casts = dtype is not None and dtype.startswith(("float", "bfloat"))
        self.eval_batch = evaluation_batch(spec, data.sample_shape, fixed)
        self.streamed = data.arrays("train") is None

    def arrays(self, part: Part) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        found = self.data.arrays(part)
        if found is None:
            raise RuntimeError("arrays() of streamed data")
        x, y = found
        return self.inputs(x), y

    def inputs(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """``x`` as the model takes it: integers as they are where the model converts every
        batch itself (see __init__), else in the model's input dtype."""
        if self.casts and (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
            return x
        return x.astype(self.x_dtype, copy=False)

    def dataset(self, part: Part, heads: list[str] | None = None, batch_size: int | None = None) -> Any:
        """The part as a tf.data pipeline that re-reads Kafka on every pass (streamed data)."""
        import tensorflow as tf

        data, x_dtype = self.data, self.x_dtype
        batch_size = batch_size or self.spec.batch_size

        def generate() -> Any:
            for x, y in data.batches(part, batch_size):
                yield x.astype(x_dtype, copy=False), y

        signature = (
            tf.TensorSpec((None, *data.sample_shape), tf.as_dtype(x_dtype)),
            tf.TensorSpec((None, *data.label_shape), tf.as_dtype(data.y_dtype)),
        )
        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
        if heads:
            dataset = dataset.map(lambda x, y: (x, {h: y for h in heads}))
        return dataset.prefetch(2)

    def fit(self, model: Any, callback: Any, heads: list[str] | None = None) -> None:
        kwargs: dict[str, Any] = {
            "batch_size": self.spec.batch_size,
            "verbose": 0,
            **_kwargs(self.spec.fit, _OWNED_FIT, "fit"),
        }
        has_validation = self.data.size("validation") > 0
        if self.streamed:
            kwargs.pop("batch_size", None)
            # Records come in the order Kafka holds them; a pass cannot be shuffled as a whole.
            kwargs["shuffle"] = False
            if has_validation:
                kwargs["validation_data"] = self.dataset("validation", heads)
            model.fit(self.dataset("train", heads), callbacks=[callback], **kwargs)
            return
        x, y = self.arrays("train")
        if has_validation:
            x_val, y_val = self.arrays("validation")
            kwargs["validation_data"] = (x_val, {h: y_val for h in heads} if heads else y_val)
        model.fit(x, {h: y for h in heads} if heads else y, callbacks=[callback], **kwargs)

    def evaluate(self, model: Any, heads: list[str] | None = None) -> dict[str, Any]:
        if self.data.size("test") == 0:
            return {}
        kwargs: dict[str, Any] = {
            "batch_size": self.eval_batch,
            "verbose": 0,
            **_kwargs(self.spec.evaluate, _OWNED_EVALUATE, "evaluate"),
        }
        if self.streamed:
            batch_size = kwargs.pop("batch_size", None)
            found = model.evaluate(self.dataset("test", heads, batch_size), return_dict=True, **kwargs)
        else:
            x, y = self.arrays("test")
            found = model.evaluate(x, {h: y for h in heads} if heads else y, return_dict=True, **kwargs)
        return dict(found)

    def predictions(self, model: Any) -> tuple[list[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
        """Each output's predictions on the test set, and the test labels."""
        outputs: list[list[np.ndarray[Any, Any]]] = []
        labels: list[np.ndarray[Any, Any]] = []
        for x, y in self.data.batches("test", self.eval_batch):
            found = model.predict_on_batch(self.inputs(x))
            found = found if isinstance(found, (list, tuple)) else [found]
            outputs.append([np.asarray(o) for o in found])
            labels.append(y)
        if not outputs:
            return [], np.zeros(0)
        per_output = [np.concatenate([batch[i] for batch in outputs]) for i in range(len(outputs[0]))]
        return per_output, np.concatenate(labels)


def _epoch_callback(report: Callable[[int, Mapping[str, Any]], None]) -> Any:
    import keras

    def on_epoch_end(epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        report(epoch + 1, logs or {})

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def _export(model: Any) -> bytes:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not getattr(optimizer, "built", True):
        # A sub-model trained inside the joint model never ran its own optimizer; building it
        # now saves the variables a loader expects (else Keras warns on every load).
        with contextlib.suppress(Exception):
            optimizer.build(model.trainable_variables)
    with tempfile.TemporaryDirectory(prefix="kafkaml-model-") as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def _call(what: str, run: Callable[[], Any]) -> Any:
    """Runs a Keras step, turning its failure into a sentence for the user."""
    try:
        return run()
    except WorkloadFailed:
        raise
    except Exception as exc:
        raise WorkloadFailed(failure_message(what, exc)) from exc


def train_keras(spec: JobSpec, data: TrainingData, on_epoch: EpochReport) -> list[ModelResult]:
    """Trains the job's model (or distributed chain); blocking: run it in a thread."""
    if len(spec.models) > 1:
        return _train_distributed(spec, data, on_epoch)
    job_model = spec.models[0]
    model = _build(job_model)
    run = _Run(spec, data, model)

    def report(epoch: int, logs: Mapping[str, Any]) -> None:
        train, val = split_epoch_logs(logs)
        log.info(
            "result %d: epoch %d: %s %s", job_model.result_id, epoch, train, {f"val_{k}": v for k, v in val.items()}
        )
        on_epoch(job_model.result_id, epoch, train, val)

    _call("model.fit", lambda: run.fit(model, _epoch_callback(report)))
    test_metrics = _float_dict(_call("model.evaluate", lambda: run.evaluate(model)))
    log.info("result %d: test metrics %s", job_model.result_id, test_metrics)
    matrix = None
    if spec.confusion_matrix and data.size("test") > 0:
        outputs, labels = _call("model.predict", lambda: run.predictions(model))
        matrix = confusion_matrix(outputs[-1], labels) if outputs else None
    artifact = _call("model.save", lambda: _export(model))
    return [ModelResult(job_model.result_id, test_metrics, matrix, artifact, "keras")]


def _head_name(result_id: int) -> str:
    return f"kafkaml_result_{result_id}"


def _train_distributed(spec: JobSpec, data: TrainingData, on_epoch: EpochReport) -> list[ModelResult]:
    import keras

    chain = chain_order(spec.models)
    models = [_build(m, require_compiled=False) for m in chain]
    params = spec.distributed or DistributedParams()
    bottom = models[0]
    if len(bottom.inputs) != 1:
        raise WorkloadFailed(f"the bottom model {chain[0].name!r} of a distributed chain must take one input")

    def joint_model() -> Any:
        inputs = keras.Input(shape=tuple(bottom.inputs[0].shape[1:]), dtype=bottom.inputs[0].dtype)
        tensor, heads = inputs, []
        for job_model, model in zip(chain, models, strict=True):
            outputs = model(tensor)
            outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
            heads.append(keras.layers.Identity(name=_head_name(job_model.result_id))(outputs[-1]))
            tensor = outputs[0]
        return keras.Model(inputs=inputs, outputs=heads, name=f"kafkaml_deployment_{spec.deployment_id}")

    joint = _call("chaining the distributed models", joint_model)
    names = [_head_name(m.result_id) for m in chain]
    metrics = [params.metrics] if isinstance(params.metrics, str) else list(params.metrics)
    try:
        optimizer = keras.optimizers.get(
            {"class_name": params.optimizer, "config": {"learning_rate": params.learning_rate}}
        )
    except (ValueError, TypeError) as exc:
        raise WorkloadFailed(f"unknown optimizer {params.optimizer!r} for distributed training: {exc}") from None
    _call(
        "compiling the distributed models",
        lambda: joint.compile(
            optimizer=optimizer,
            loss={name: params.loss for name in names},
            metrics={name: list(metrics) for name in names},
        ),
    )
    run = _Run(spec, data, bottom)

    def report(epoch: int, logs: Mapping[str, Any]) -> None:
        for job_model, name in zip(chain, names, strict=True):
            train, val = split_epoch_logs(logs, prefix=f"{name}_")
            log.info("result %d: epoch %d: %s val %s", job_model.result_id, epoch, train, val)
            on_epoch(job_model.result_id, epoch, train, val)

    _call("model.fit", lambda: run.fit(joint, _epoch_callback(report), heads=names))
    evaluated = _call("model.evaluate", lambda: run.evaluate(joint, heads=names))
    outputs: list[np.ndarray[Any, Any]] = []
    labels = np.zeros(0)
    if spec.confusion_matrix and data.size("test") > 0:
        outputs, labels = _call("model.predict", lambda: run.predictions(joint))
    results = []
    for index, (job_model, model, name) in enumerate(zip(chain, models, names, strict=True)):
        test_metrics, _ = split_epoch_logs(evaluated, prefix=f"{name}_")
        log.info("result %d: test metrics %s", job_model.result_id, test_metrics)
        matrix = confusion_matrix(outputs[index], labels) if index < len(outputs) else None
        artifact = _call(f"saving model {job_model.name!r}", partial(_export, model))
        results.append(ModelResult(job_model.result_id, test_metrics, matrix, artifact, "keras"))
    return results
