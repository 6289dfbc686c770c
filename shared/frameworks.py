"""What each framework's training takes, checked before anything launches.

Users pass ``fit`` and ``evaluate`` parameters in the framework's own
vocabulary (upstream Kafka-ML's convention). They are data: keys are checked
against these lists (kept honest by a test against the installed Keras'
signatures) and values by type; nothing is ever evaluated as code.
"""

from __future__ import annotations

from typing import Any

# keras.Model.fit / evaluate keywords a user may set. Left out on purpose:
# x, y, batch_size, validation_data (the platform supplies them), callbacks
# (objects, not data), sample_weight (per-sample arrays).
KERAS_FIT: dict[str, type | tuple[type, ...]] = {
    "epochs": int,
    "verbose": (int, str),
    "validation_split": float,
    "shuffle": bool,
    "class_weight": dict,
    "initial_epoch": int,
    "steps_per_epoch": int,
    "validation_steps": int,
    "validation_batch_size": int,
    "validation_freq": int,
}
KERAS_EVALUATE: dict[str, type | tuple[type, ...]] = {"verbose": (int, str), "steps": int}

# Ignite's Engine.run keywords, plus torch DataLoader keywords (batch_size comes from the deployment).
TORCH_ENGINE = {"max_epochs": int, "epochs": int, "epoch_length": int}
TORCH_LOADER: dict[str, type | tuple[type, ...]] = {
    "shuffle": bool,
    "num_workers": int,
    "drop_last": bool,
    "pin_memory": bool,
    "persistent_workers": bool,
    "prefetch_factor": int,
    "timeout": (int, float),
}
TORCH_FIT = {**TORCH_ENGINE, **TORCH_LOADER}
TORCH_EVALUATE: dict[str, type | tuple[type, ...]] = {"epoch_length": int, **TORCH_LOADER}

ALLOWED: dict[str, dict[str, dict[str, type | tuple[type, ...]]]] = {
    "tensorflow": {"fit": KERAS_FIT, "evaluate": KERAS_EVALUATE},
    "pytorch": {"fit": TORCH_FIT, "evaluate": TORCH_EVALUATE},
}


def check_training_params(framework: str, section: str, params: dict[str, Any]) -> tuple[str, str] | None:
    """(field, reason) for the first parameter the framework does not take, or None."""
    allowed = ALLOWED[framework][section]
    for key, value in params.items():
        if key not in allowed:
            names = ", ".join(sorted(allowed))
            return f"{section}.{key}", f"{framework} {section} does not take {key!r} (it takes: {names})"
        expected = allowed[key]
        # JSON has no int/float distinction worth failing on; bool is not a number here.
        numeric = expected in (float, (int, float)) and isinstance(value, int) and not isinstance(value, bool)
        if not numeric and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
            kind = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            return f"{section}.{key}", f"{section}.{key} must be {kind}, not {type(value).__name__}"
        if key in ("epochs", "max_epochs", "epoch_length", "steps_per_epoch", "steps") and value < 1:
            return f"{section}.{key}", f"{section}.{key} must be at least 1"
    return None
