"""A user's Keras model: checked for what training needs, and summarized for the user.

TensorFlow is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from shared.events.catalog import LayerSummary, ModelSummary
from shared.usercode.errors import ModelCodeError
from shared.usercode.shapes import plain_shape

__all__ = ["check_keras", "summarize_keras"]


def check_keras(model: Any, *, require_compiled: bool) -> None:
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
    return [plain_shape(t.shape) for t in tensors]


def _keras_layer_output_shape(layer: Any) -> list[Any] | None:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        # Layers of a subclassed model have no symbolic output.
        return None
    if isinstance(output, (list, tuple)):
        return [plain_shape(t.shape) for t in output]
    return plain_shape(output.shape)


def _keras_count(layer: Any) -> int:
    try:
        return int(layer.count_params())
    except ValueError:  # an unbuilt layer has no weights to count
        return 0


def summarize_keras(model: Any) -> ModelSummary:
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
            shape = plain_shape(value)
        except (TypeError, ValueError):
            return []
        if shape:
            shape[0] = None  # the batch the user happened to build with
        result.append(shape)
    return result
