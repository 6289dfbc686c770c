"""The served model: its artifact from Kafka, the device, loading, and one call per batch.

**Artifact.** The trainer published the model as checksummed chunks on the
artifacts topic (keyed by result id); the orchestrator sends them again when
it deploys an inference (the embedded broker forgets topics on restart). A
replica reads its result's partition from the end backwards, without a group
(then what arrives after, until a timeout), keeps the chunks whose checksum is
the spec's, and stops once it has all ``count`` of them; the whole is checked
against the SHA-256.

**Loading** takes nothing that crossed a topic as code: a Keras ``.keras``
file loads in safe mode (no Python lambdas), a PyTorch state dict with
``weights_only=True`` into the module the spec's code builds (user code runs
in this process only, as in the trainer).

**Calling.** Per call overhead is most of a small model's cost when batches
hold one or two inputs. So a Keras model is called through the concrete
function of a ``tf.function`` traced once with a batch dimension of None (one
trace, any batch size, no argument binding per call), and through
``predict_on_batch`` where the model has no symbolic input to trace from;
eager ``model(x)`` is the slowest. PyTorch runs under
``torch.inference_mode()``. The calls block: the serving loop decides where
they run (:mod:`services.inferencer.serving`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import os
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Final

import numpy as np

from shared.artifacts import ResultPartition, chunk_bytes, sha256_of
from shared.codecs import Decoder
from shared.errors import Undecodable, WorkloadFailed
from shared.events import decode
from shared.events.catalog import ModelDefinition
from shared.events.inference import ServeSpec
from shared.events.training import ArtifactChunk
from shared.settings import Settings
from shared.usercode import ModelCodeError, build_model, failure_message

__all__ = [
    "ARTIFACT_TIMEOUT_S",
    "KerasModel",
    "ServedModel",
    "TorchModel",
    "WorkloadFailed",
    "as_arrays",
    "check_outputs",
    "configure_device",
    "fetch_artifact",
    "load_model",
    "warm_up",
]

log = logging.getLogger("kafkaml.inferencer")

# The orchestrator re-sends the artifact as it launches the replicas: it may arrive after we start.
ARTIFACT_TIMEOUT_S: Final = 120.0


# --- the artifact ---------------------------------------------------------------


async def fetch_artifact(
    settings: Settings,
    spec: ServeSpec,
    timeout_s: float = ARTIFACT_TIMEOUT_S,
    stop: asyncio.Event | None = None,
) -> bytes | None:
    """The model file of ``spec.result_id`` from the artifacts topic, checked; None if ``stop`` was set.

    Raises WorkloadFailed when the chunks are not all there in time or do not add up to the checksum.
    """
    chunks: dict[int, bytes] = {}
    count: int | None = None
    key, sha = str(spec.result_id).encode(), spec.artifact_sha256.encode()

    def take(record: Any) -> bool:
        nonlocal count
        # Cheap tests first: the partition holds every version and checkpoint of the result,
        # and other results' chunks, and a switch reads it while the replica serves.
        if record.key != key or record.value is None or sha not in record.value:
            return False
        chunk = _chunk_of(record.value, spec)
        if chunk is None:
            return False
        count = chunk.count
        # A re-sent artifact repeats its chunks: any copy of an index will do (same checksum).
        if chunk.index < chunk.count and chunk.index not in chunks:
            try:
                chunks[chunk.index] = chunk_bytes(chunk)
            except ValueError as exc:
                log.warning("%s: ignored", exc)
        return len(chunks) == count

    deadline = time.monotonic() + timeout_s
    reader = ResultPartition(
        settings, spec.result_id, max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024
    )
    async with reader:
        found = await reader.newest_first(take, stop) or await reader.follow(take, deadline, stop)
    if not found:
        if stop is not None and stop.is_set():
            return None
        have = f"{len(chunks)} of {count}" if count is not None else "none"
        raise WorkloadFailed(
            f"the model of result {spec.result_id} (sha256 {spec.artifact_sha256[:12]}…) did not arrive "
            f"on {reader.topic} within {timeout_s:g} s ({have} of its chunks)"
        )
    assert count is not None
    data = b"".join(chunks[index] for index in range(count))
    digest = sha256_of(data)
    if digest != spec.artifact_sha256:
        raise WorkloadFailed(
            f"the model of result {spec.result_id} does not match its checksum "
            f"(sha256 {digest[:12]}…, expected {spec.artifact_sha256[:12]}…)"
        )
    log.info(
        "artifact of result %d: %d bytes in %d chunks, checksum verified (%d records read)",
        spec.result_id,
        len(data),
        count,
        reader.records_read,
    )
    return data


def _chunk_of(value: bytes | None, spec: ServeSpec) -> Any:
    if value is None:
        return None
    try:
        message = decode(value)
    except Undecodable:
        return None
    if not isinstance(message, ArtifactChunk):
        return None
    chunk = message.payload
    if chunk.result_id != spec.result_id or chunk.sha256 != spec.artifact_sha256:
        return None
    return chunk


# --- the device -------------------------------------------------------------------


def configure_device(framework: str, gpus: int, threads: int) -> str:
    """Imports the framework, hides the GPUs unless some were asked for; the device for the log.

    Blocking (TensorFlow imports in seconds): run it in a thread.
    """
    if gpus == 0 and not ({"tensorflow", "torch"} & set(sys.modules)):
        # The robust way to hide GPUs: before CUDA initializes. In-process callers that
        # imported a framework already get the framework's own switch below.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if framework == "tensorflow":
        return _configure_tensorflow(gpus, threads)
    return _configure_torch(gpus, threads)


def _configure_tensorflow(gpus: int, threads: int) -> str:
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # TensorFlow already running in this process
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    found = tf.config.list_physical_devices("GPU")
    if gpus == 0:
        with contextlib.suppress(RuntimeError):
            tf.config.set_visible_devices([], "GPU")
        return "CPU"
    if not found:
        log.warning("%d GPU(s) asked for but none is present: serving on the CPU", gpus)
        return "CPU"
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices(found[:gpus], "GPU")
        for gpu in found[:gpus]:
            tf.config.experimental.set_memory_growth(gpu, True)
    return f"GPU ({min(gpus, len(found))} of {len(found)})"


def _configure_torch(gpus: int, threads: int) -> str:
    import torch

    torch.set_num_threads(threads)
    if gpus > 0:
        if torch.cuda.is_available():
            return "cuda"
        log.warning("%d GPU(s) asked for but none is present: serving on the CPU", gpus)
    return "cpu"


# --- the model ----------------------------------------------------------------------


def as_arrays(outputs: Any) -> list[np.ndarray[Any, Any]]:
    """A model's result (a tensor, or a list, tuple or dict of them) as a list of numpy arrays."""
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    arrays = []
    for output in outputs:
        if hasattr(output, "detach"):  # torch
            output = output.detach().cpu().numpy()
        elif hasattr(output, "numpy"):  # TensorFlow
            output = output.numpy()
        arrays.append(np.asarray(output))
    return arrays


class ServedModel(ABC):
    """A loaded model: what it takes, and one blocking call per batch."""

    framework: str
    device: str
    parameters: int
    # One sample's shape, as far as the model declares it (None: a dimension it does not fix).
    input_shape: tuple[int | None, ...] | None
    input_dtype: np.dtype[Any]

    @abstractmethod
    def predict(self, x: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        """The model's outputs for a batch, one array per output (batch first)."""

    def fixed_shape(self) -> tuple[int, ...] | None:
        """The input shape when every dimension is known."""
        if self.input_shape is None or any(d is None for d in self.input_shape):
            return None
        return tuple(int(d) for d in self.input_shape if d is not None)

    def prepare(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The decoded batch in the model's dtype, reshaped to its input when only the layout differs
        (``data_reshape`` "64" for a model that takes 8x8)."""
        shape = self.fixed_shape()
        if shape is not None and x.shape[1:] != shape:
            if math.prod(x.shape[1:]) != math.prod(shape):
                raise ValueError(f"the model takes samples of shape {shape}, the input has {x.shape[1:]}")
            x = x.reshape(len(x), *shape)
        return np.ascontiguousarray(x, dtype=self.input_dtype)

    def describe(self) -> str:
        shape = "unknown" if self.input_shape is None else str(self.input_shape)
        dtype = self.input_dtype.name
        return f"{self.framework} model, {self.parameters} parameters, input {shape} {dtype}, on {self.device}"


class KerasModel(ServedModel):
    framework = "tensorflow"

    def __init__(self, model: Any, device: str) -> None:
        import tensorflow as tf

        self.model = model
        self.device = device
        self.parameters = int(model.count_params())
        self._function: Any = None
        self._constant: Any = None
        try:
            inputs = list(model.inputs)
        except (AttributeError, ValueError):  # a subclassed model has no symbolic inputs
            inputs = []
        if len(inputs) > 1:
            raise WorkloadFailed(f"the model takes {len(inputs)} inputs; an inference feeds it one")
        if inputs:
            spec = inputs[0]
            self.input_shape = tuple(None if d is None else int(d) for d in spec.shape[1:])
            self.input_dtype = np.dtype(str(spec.dtype))
            # One trace for every batch size: the batch dimension is None in the signature.
            function = tf.function(
                lambda x: model(x, training=False),
                input_signature=[tf.TensorSpec((None, *self.input_shape), dtype=str(spec.dtype))],
            )
            self._function = function.get_concrete_function()
            self._constant = tf.constant
        else:
            self.input_shape = None
            self.input_dtype = np.dtype(np.float32)

    def predict(self, x: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        if self._function is not None:
            return as_arrays(self._function(self._constant(x)))
        return as_arrays(self.model.predict_on_batch(x))


class TorchModel(ServedModel):
    framework = "pytorch"

    def __init__(self, module: Any, device: str) -> None:
        self.module = module
        self.device = device
        self.parameters = int(sum(p.numel() for p in module.parameters()))
        # A module does not declare its input: the stream's data_reshape is what it was trained on.
        self.input_shape = None
        # The trainer feeds float32, whatever the stream's type.
        self.input_dtype = np.dtype(np.float32)

    def predict(self, x: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        import torch

        with torch.inference_mode():
            return as_arrays(self.module(torch.from_numpy(x).to(self.device)))


def load_model(spec: ServeSpec, artifact: bytes, device: str) -> ServedModel:
    """Loads the artifact (blocking: run it in a thread); WorkloadFailed with the reason."""
    if spec.artifact_format == "keras":
        return _load_keras(artifact, device)
    return _load_torch(spec, artifact, device)


def _load_keras(artifact: bytes, device: str) -> KerasModel:
    import keras

    with tempfile.TemporaryDirectory(prefix="kafkaml-model-") as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(artifact)
        try:
            # compile=False: serving needs no optimizer or loss (and a custom loss would not load).
            model = keras.models.load_model(path, safe_mode=True, compile=False)
        except Exception as exc:
            raise WorkloadFailed(
                f"the Keras model could not be loaded (safe mode): {type(exc).__name__}: {exc}"
            ) from None
    return KerasModel(model, device)


def _load_torch(spec: ServeSpec, artifact: bytes, device: str) -> TorchModel:
    import torch

    try:
        definition = ModelDefinition(
            name=f"result-{spec.result_id}", framework="pytorch", code=spec.code, imports=spec.imports
        )
    except ValueError as exc:  # pydantic's ValidationError: no code at all
        raise WorkloadFailed(f"the spec carries no usable model code: {exc}") from None
    try:
        module, _ = build_model(definition)
    except ModelCodeError as exc:
        raise WorkloadFailed(failure_message("the model code could not be built", exc)) from None
    try:
        state = torch.load(io.BytesIO(artifact), weights_only=True, map_location=device)
        module.load_state_dict(state)
    except Exception as exc:
        raise WorkloadFailed(
            f"the trained weights do not load into the model code: {type(exc).__name__}: {exc}"
        ) from None
    module.to(device)
    module.eval()
    return TorchModel(module, device)


def warm_up(model: ServedModel, decoder: Decoder) -> tuple[int | None, float]:
    """Calls the model on one zero sample (traces it, checks it takes the stream's samples).

    (number of outputs, seconds of a warm call); no outputs count when the sample shape is
    not known before data arrives (Avro, JSON without a shape). Blocking: run it in a thread.
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


def check_outputs(outputs: int | None, *, distributed: bool) -> None:
    """A distributed sub-model has two outputs at least (WorkloadFailed otherwise); None: not known yet."""
    if distributed and outputs is not None and outputs < 2:
        raise WorkloadFailed(
            "a distributed inference needs a model with two outputs (to the upper model, prediction); "
            f"this one has {outputs}"
        )
