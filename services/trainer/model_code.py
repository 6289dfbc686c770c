"""Build a user's model from its source code, check it, and summarize it.

This runs *inside* the process that is allowed to execute user code: the
validator sandbox's child process, and later the training worker. It imports
TensorFlow or PyTorch lazily so that importing this module stays cheap (the
sandbox parent imports it only for :class:`ModelCodeError`).

The namespace handed to user code mirrors what upstream Kafka-ML's executors
provide, so the upstream README examples run unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, Literal

from shared.events.catalog import Framework, LayerSummary, ModelDefinition, ModelSummary

__all__ = [
    "ModelCodeError",
    "base_namespace",
    "build_model",
    "summarize",
    "validate_definition",
]

Field = Literal["code", "imports"]

# compile() filenames: they let us tell the user's frames apart in a traceback.
_FILENAMES: dict[Field, str] = {"imports": "<imports>", "code": "<code>"}
_FIELDS_BY_FILENAME: dict[str, Field] = {v: k for k, v in _FILENAMES.items()}

# An exception message can be arbitrarily long (a user can raise anything);
# it travels in a Kafka event, so keep it readable.
_MAX_MESSAGE = 2000

_PYTORCH_METHODS = ("loss_fn", "optimizer", "metrics")


class ModelCodeError(Exception):
    """The user's model code is wrong; ``field`` and ``line`` say where."""

    def __init__(self, message: str, *, field: Field = "code", line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field: Field = field
        self.line = line

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "field": self.field, "line": self.line}

    def __repr__(self) -> str:
        return f"ModelCodeError({self.message!r}, field={self.field!r}, line={self.line!r})"


# --- executing the user's code ----------------------------------------------


def base_namespace(framework: Framework) -> dict[str, Any]:
    """The globals user code starts with (the names upstream Kafka-ML provides)."""
    import numpy as np

    namespace: dict[str, Any] = {
        # Classes defined by user code get this as __module__, instead of "builtins".
        "__name__": "__kafkaml_model__",
        "np": np,
    }
    if framework == "tensorflow":
        import keras
        import tensorflow as tf

        namespace.update(tf=tf, keras=keras)
    else:
        import torch
        import torch.nn.functional as functional
        from ignite.metrics import (
            Accuracy,
            ConfusionMatrix,
            Loss,
            MeanAbsoluteError,
            MeanSquaredError,
            Precision,
            Recall,
        )

        namespace.update(
            torch=torch,
            nn=torch.nn,
            F=functional,
            Accuracy=Accuracy,
            Loss=Loss,
            Precision=Precision,
            Recall=Recall,
            ConfusionMatrix=ConfusionMatrix,
            MeanSquaredError=MeanSquaredError,
            MeanAbsoluteError=MeanAbsoluteError,
        )
    return namespace


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def user_location(exc: BaseException) -> tuple[Field | None, int | None]:
    """The deepest frame of the traceback that belongs to the user's source.

    The deepest one is the most precise: for an error inside a function the
    user defined, it is the line in that function, not the call site.
    """
    field: Field | None = None
    line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        found = _FIELDS_BY_FILENAME.get(tb.tb_frame.f_code.co_filename)
        if found is not None:
            field, line = found, tb.tb_lineno
        tb = tb.tb_next
    return field, line


def _runtime_error(exc: BaseException, default_field: Field) -> ModelCodeError:
    field, line = user_location(exc)
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if line is not None:
        message += f" (line {line})"
    return ModelCodeError(_truncate(message), field=field or default_field, line=line)


def _run_source(source: str, field: Field, namespace: dict[str, Any]) -> None:
    if not source.strip():
        return
    try:
        compiled = compile(source, _FILENAMES[field], "exec")
    except SyntaxError as exc:
        # IndentationError/TabError are SyntaxErrors: their own name is more helpful.
        name = type(exc).__name__
        if exc.lineno is None:
            raise ModelCodeError(_truncate(f"{name}: {exc.msg}"), field=field) from None
        raise ModelCodeError(
            _truncate(f"{name}: {exc.msg} (line {exc.lineno})"), field=field, line=exc.lineno
        ) from None
    except ValueError as exc:  # e.g. "source code string cannot contain null bytes"
        raise ModelCodeError(_truncate(f"ValueError: {exc}"), field=field) from None
    try:
        # Running user code is the point of this module; it is confined by the
        # caller (sandbox child process or training worker), not here.
        exec(compiled, namespace)
    except (Exception, SystemExit) as exc:
        # SystemExit too: `exit()` in user code is a mistake to report, not a
        # reason to end the worker.
        raise _runtime_error(exc, field) from None


def _call_user(func: Any, what: str) -> Any:
    """Call a method the user wrote, reporting its failure with the user's line."""
    try:
        return func()
    except (Exception, SystemExit) as exc:
        error = _runtime_error(exc, "code")
        error.message = f"{what} failed: {error.message}"
        error.args = (error.message,)
        raise error from None


def build_model(definition: ModelDefinition, *, require_compiled: bool = True) -> tuple[Any, dict[str, Any]]:
    """Run ``imports`` then ``code`` in one namespace; return (model, namespace).

    One namespace for both parts, used as the globals of user code: functions
    and methods the user defines see ``model`` (upstream's PyTorch example
    calls ``model.parameters()`` inside ``optimizer()``).

    The model is checked for its framework (built Keras model, compiled
    unless ``require_compiled`` is false; PyTorch module with
    loss_fn/optimizer/metrics), so a caller gets a model that is ready to
    train, or a :class:`ModelCodeError`. Sub-models of a distributed chain
    need no compile: the joint model is compiled with the deployment's
    optimizer, loss and metrics.
    """
    namespace = base_namespace(definition.framework)
    with warnings.catch_warnings():
        # Deprecation chatter from Keras/torch is not the user's error and has nowhere useful to go.
        warnings.simplefilter("ignore")
        _run_source(definition.imports, "imports", namespace)
        _run_source(definition.code, "code", namespace)
        if "model" not in namespace:
            raise ModelCodeError("the code must assign the model to a variable named `model`")
        model = namespace["model"]
        if definition.framework == "tensorflow":
            _check_keras(model, require_compiled=require_compiled)
        else:
            _check_torch(model)
    return model, namespace


def summarize(framework: Framework, model: Any, namespace: dict[str, Any]) -> ModelSummary:
    """Describe a model that :func:`build_model` returned."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if framework == "tensorflow":
            return _summarize_keras(model)
        return _summarize_torch(model, namespace)


def validate_definition(definition: ModelDefinition) -> ModelSummary:
    """Build, check and summarize: what the validator answers.

    A Keras model need not be compiled here: a model may become part of a
    distributed chain later, and such sub-models are compiled jointly. A
    standalone model that is not compiled fails its training with that reason.
    """
    model, namespace = build_model(definition, require_compiled=False)
    return summarize(definition.framework, model, namespace)


# --- TensorFlow / Keras -------------------------------------------------------


def _shape(shape: Iterable[Any]) -> list[int | None]:
    # Dimensions may be numpy ints or TF Dimension-like objects: JSON wants plain ints.
    return [None if d is None else int(d) for d in shape]


def _check_keras(model: Any, *, require_compiled: bool) -> None:
    import keras

    if not isinstance(model, keras.Model):
        raise ModelCodeError(
            f"for TensorFlow, `model` must be a Keras model (tf.keras.Model), not {type(model).__name__}"
        )
    if not model.built:
        raise ModelCodeError(
            "the model is not built: give it an input shape, e.g. start a Sequential with "
            "tf.keras.Input(shape=...) or pass input_shape=... to the first layer"
        )
    # Keras 3 only creates the `optimizer` attribute in compile().
    if require_compiled and getattr(model, "optimizer", None) is None:
        raise ModelCodeError("the model is not compiled: call model.compile(...) with an optimizer, a loss and metrics")


def _keras_tensor_shapes(tensors: Any) -> list[list[int | None]]:
    if tensors is None:
        return []
    if not isinstance(tensors, (list, tuple)):
        tensors = [tensors]
    return [_shape(t.shape) for t in tensors]


def _keras_layer_output_shape(layer: Any) -> list[Any] | None:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        # Layers of a subclassed model have no symbolic output.
        return None
    if isinstance(output, (list, tuple)):
        return [_shape(t.shape) for t in output]
    return _shape(output.shape)


def _keras_count(layer: Any) -> int:
    try:
        return int(layer.count_params())
    except ValueError:  # an unbuilt layer has no weights to count
        return 0


def _summarize_keras(model: Any) -> ModelSummary:
    import numpy as np

    layers = [
        LayerSummary(
            name=layer.name,
            type=type(layer).__name__,
            output_shape=_keras_layer_output_shape(layer),
            parameters=_keras_count(layer),
        )
        for layer in model.layers
    ]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)

    try:
        input_shapes = _keras_tensor_shapes(model.inputs)
    except (AttributeError, ValueError):
        input_shapes = _keras_build_shapes(model)
    try:
        output_shapes = _keras_tensor_shapes(model.outputs)
    except (AttributeError, ValueError):
        output_shapes = []

    return ModelSummary(
        layers=layers,
        parameters=_keras_count(model),
        trainable_parameters=trainable,
        input_shapes=input_shapes,
        output_shapes=output_shapes,
    )


def _keras_build_shapes(model: Any) -> list[list[int | None]]:
    # A subclassed model has no `inputs`; Keras 3 remembers what build() got.
    # Private attribute, hence best effort only.
    shapes = getattr(model, "_build_shapes_dict", None)
    if not isinstance(shapes, dict):
        return []
    result: list[list[int | None]] = []
    for value in shapes.values():
        try:
            shape = _shape(value)
        except (TypeError, ValueError):
            return []
        if shape:
            shape[0] = None  # the batch the user happened to build with
        result.append(shape)
    return result


# --- PyTorch ----------------------------------------------------------------


def _check_torch(model: Any) -> None:
    import torch
    from ignite.metrics import Metric

    if not isinstance(model, torch.nn.Module):
        raise ModelCodeError(f"for PyTorch, `model` must be a torch.nn.Module, not {type(model).__name__}")
    missing = [name for name in _PYTORCH_METHODS if not callable(getattr(model, name, None))]
    if missing:
        raise ModelCodeError(
            f"the PyTorch model must define loss_fn(), optimizer() and metrics() (missing: {', '.join(missing)})"
        )

    loss = _call_user(model.loss_fn, "model.loss_fn()")
    if not callable(loss):
        raise ModelCodeError(
            f"model.loss_fn() must return a loss function such as nn.CrossEntropyLoss(), not {type(loss).__name__}"
        )
    optimizer = _call_user(model.optimizer, "model.optimizer()")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ModelCodeError(
            "model.optimizer() must return a torch.optim.Optimizer, e.g. "
            f"torch.optim.Adam(model.parameters()), not {type(optimizer).__name__}"
        )
    metrics = _call_user(model.metrics, "model.metrics()")
    if not isinstance(metrics, dict):
        raise ModelCodeError(
            "model.metrics() must return a dict of ignite metrics, e.g. "
            f'{{"accuracy": Accuracy()}}, not {type(metrics).__name__}'
        )
    wrong = [str(key) for key, value in metrics.items() if not isinstance(key, str) or not isinstance(value, Metric)]
    if wrong:
        raise ModelCodeError(
            "model.metrics() must map names to ignite metrics (ignite.metrics.Metric); "
            f"wrong entries: {', '.join(wrong)}"
        )


def _torch_input_shape(model: Any, namespace: dict[str, Any]) -> list[int | None] | None:
    """The model's input shape with None for the batch (and unknown) dimensions.

    A global ``input_shape`` in the user's code wins. Like Keras' input_shape
    it excludes the batch dimension, unless it starts with None.
    """
    import torch

    declared = namespace.get("input_shape")
    if isinstance(declared, (tuple, list)) and all(d is None or isinstance(d, int) for d in declared):
        shape = _shape(declared)
        if not shape or shape[0] is not None:
            shape = [None, *shape]
        return shape

    conv_dims: dict[type[Any], int] = {
        torch.nn.Conv1d: 1,
        torch.nn.Conv2d: 2,
        torch.nn.Conv3d: 3,
    }
    for module in model.modules():
        if any(True for _ in module.children()) or not any(True for _ in module.parameters(recurse=False)):
            continue
        if isinstance(module, torch.nn.Linear):
            return [None, int(module.in_features)]
        for conv_type, dims in conv_dims.items():
            if isinstance(module, conv_type):
                return [None, int(module.in_channels), *([None] * dims)]
        # The first layer with weights is something we cannot read a shape from.
        return None
    return None


def _torch_shapes(value: Any) -> list[list[int | None]]:
    """Shapes of the tensors in a forward's result, batch dimension as None."""
    import torch

    if isinstance(value, torch.Tensor):
        shape: list[int | None] = _shape(value.shape)
        if shape:
            shape[0] = None
        return [shape]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _torch_shapes(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _torch_shapes(item)]
    return []


def _torch_dummy_forward(
    model: Any, input_shape: list[int | None], leaves: dict[str, Any]
) -> tuple[list[list[int | None]], dict[str, list[Any]]]:
    """Run zeros through the model: its output shapes and each leaf's output shape.

    A failure is not an error of the user's: a model may need inputs of a kind
    zeros cannot stand for (token ids, several tensors...).
    """
    import torch

    if any(d is None for d in input_shape[1:]):
        return [], {}
    layer_shapes: dict[str, list[Any]] = {}
    handles = []

    def recorder(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            shapes = _torch_shapes(output)
            if shapes:
                layer_shapes.setdefault(name, shapes[0] if len(shapes) == 1 else list(shapes))

        return hook

    was_training = model.training
    try:
        for name, module in leaves.items():
            handles.append(module.register_forward_hook(recorder(name)))
        model.eval()
        dims = [1 if d is None else d for d in input_shape]
        with torch.no_grad():
            output = model(torch.zeros(*dims))
        return _torch_shapes(output), layer_shapes
    except Exception:  # see the docstring: not the user's error
        return [], {}
    finally:
        for handle in handles:
            handle.remove()
        # The training worker reuses this model object: leave its mode as found.
        model.train(was_training)


def _summarize_torch(model: Any, namespace: dict[str, Any]) -> ModelSummary:
    leaves: dict[str, Any] = {}
    for name, module in model.named_modules():
        if not any(True for _ in module.children()):
            leaves[name or type(module).__name__] = module

    input_shape = _torch_input_shape(model, namespace)
    output_shapes: list[list[int | None]] = []
    layer_shapes: dict[str, list[Any]] = {}
    if input_shape is not None:
        output_shapes, layer_shapes = _torch_dummy_forward(model, input_shape, leaves)

    layers = [
        LayerSummary(
            name=name,
            type=type(module).__name__,
            output_shape=layer_shapes.get(name),
            parameters=sum(p.numel() for p in module.parameters(recurse=False)),
        )
        for name, module in leaves.items()
    ]
    parameters = list(model.parameters())
    return ModelSummary(
        layers=layers,
        parameters=sum(p.numel() for p in parameters),
        trainable_parameters=sum(p.numel() for p in parameters if p.requires_grad),
        input_shapes=[input_shape] if input_shape is not None else [],
        output_shapes=output_shapes,
    )
