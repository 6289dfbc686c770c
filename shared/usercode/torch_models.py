"""A user's PyTorch model: checked for what training needs, and summarized for the user.

torch and ignite are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from shared.events.catalog import LayerSummary, ModelSummary
from shared.usercode.errors import ModelCodeError, call_user
from shared.usercode.shapes import plain_shape

__all__ = ["check_torch", "summarize_torch"]

_PYTORCH_METHODS = ("loss_fn", "optimizer", "metrics")


def check_torch(model: Any) -> None:
    import torch
    from ignite.metrics import Metric

    if not isinstance(model, torch.nn.Module):
        raise ModelCodeError(f"for PyTorch, `model` must be a torch.nn.Module, not {type(model).__name__}")
    missing = [name for name in _PYTORCH_METHODS if not callable(getattr(model, name, None))]
    if missing:
        raise ModelCodeError(
            f"the PyTorch model must define loss_fn(), optimizer() and metrics() (missing: {', '.join(missing)})"
        )

    loss = call_user(model.loss_fn, "model.loss_fn()")
    if not callable(loss):
        raise ModelCodeError(
            f"model.loss_fn() must return a loss function such as nn.CrossEntropyLoss(), not {type(loss).__name__}"
        )
    optimizer = call_user(model.optimizer, "model.optimizer()")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ModelCodeError(
            "model.optimizer() must return a torch.optim.Optimizer, e.g. "
            f"torch.optim.Adam(model.parameters()), not {type(optimizer).__name__}"
        )
    metrics = call_user(model.metrics, "model.metrics()")
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
        shape = plain_shape(declared)
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
        shape: list[int | None] = plain_shape(value.shape)
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


def summarize_torch(model: Any, namespace: dict[str, Any]) -> ModelSummary:
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
