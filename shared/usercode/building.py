"""Build a user's model from its source code, in the namespace upstream Kafka-ML provides.

This runs only in processes allowed to execute user code: the validator
sandbox's child, the trainer and the inferencer. TensorFlow or PyTorch is
imported lazily, so importing this module stays cheap. The namespace mirrors
upstream Kafka-ML's executors, so the upstream README examples run unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any

from shared.events.catalog import Framework, ModelDefinition, ModelSummary
from shared.process import truncate
from shared.usercode.errors import FILENAMES, MAX_MESSAGE, Field, ModelCodeError, runtime_error
from shared.usercode.keras_models import check_keras, summarize_keras
from shared.usercode.torch_models import check_torch, summarize_torch

__all__ = ["base_namespace", "build_model", "summarize", "validate_definition"]


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


def _run_source(source: str, field: Field, namespace: dict[str, Any]) -> None:
    if not source.strip():
        return
    try:
        compiled = compile(source, FILENAMES[field], "exec")
    except SyntaxError as exc:
        # IndentationError/TabError are SyntaxErrors: their own name is more helpful.
        name = type(exc).__name__
        if exc.lineno is None:
            raise ModelCodeError(truncate(f"{name}: {exc.msg}", MAX_MESSAGE), field=field) from None
        raise ModelCodeError(
            truncate(f"{name}: {exc.msg} (line {exc.lineno})", MAX_MESSAGE), field=field, line=exc.lineno
        ) from None
    except ValueError as exc:  # e.g. "source code string cannot contain null bytes"
        raise ModelCodeError(truncate(f"ValueError: {exc}", MAX_MESSAGE), field=field) from None
    try:
        # Running user code is the point of this module; it is confined by the
        # caller (sandbox child process or training worker), not here.
        exec(compiled, namespace)
    except (Exception, SystemExit) as exc:
        # SystemExit too: `exit()` in user code is a mistake to report, not a
        # reason to end the worker.
        raise runtime_error(exc, field) from None


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
            check_keras(model, require_compiled=require_compiled)
        else:
            check_torch(model)
    return model, namespace


def summarize(framework: Framework, model: Any, namespace: dict[str, Any]) -> ModelSummary:
    """Describe a model that :func:`build_model` returned."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if framework == "tensorflow":
            return summarize_keras(model)
        return summarize_torch(model, namespace)


def validate_definition(definition: ModelDefinition) -> ModelSummary:
    """Build, check and summarize: what the validator answers.

    A Keras model need not be compiled here: a model may become part of a
    distributed chain later, and such sub-models are compiled jointly. A
    standalone model that is not compiled fails its training with that reason.
    """
    model, namespace = build_model(definition, require_compiled=False)
    return summarize(definition.framework, model, namespace)
