"""Predictions are written byte for byte as the contract states them, nested as the model's output."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from services.inferencer.routing import encode_predictions


def row_by_row(outputs: np.ndarray[Any, Any]) -> list[bytes]:
    """The encoding as the contract states it, one row at a time, nested by recursion (the reference)."""
    digits = {2: 5, 4: 9}[outputs.dtype.itemsize]

    def nested(value: Any) -> bytes:
        if isinstance(value, list):
            return b"[" + b", ".join(nested(v) for v in value) + b"]"
        return b"%.*g" % (digits, value)

    rows = outputs.reshape(len(outputs), 1) if outputs.ndim == 1 else outputs
    return [b'{"values": ' + nested(row) + b"}" for row in rows.tolist()]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(1, 10), (7, 1), (512, 10), (3, 2, 2), (2, 1, 3, 2), (5,)])
def test_batch_encoding_matches_row_by_row(dtype: Any, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    outputs = (rng.standard_normal(shape) * 10.0 ** rng.integers(-4, 4, shape)).astype(dtype)
    assert encode_predictions(outputs) == row_by_row(outputs)


def test_known_values_and_an_empty_batch() -> None:
    outputs = np.array([[0.0871744305, 1.0], [-0.0, 3e-38]], dtype=np.float32)
    assert encode_predictions(outputs) == [b'{"values": [0.0871744305, 1]}', b'{"values": [-0, 3.00000009e-38]}']
    assert encode_predictions(np.zeros((0, 10), dtype=np.float32)) == []


def test_not_finite_values_are_null_and_float64_is_shortest_repr() -> None:
    outputs = np.array([[np.nan, 1.5], [np.inf, 0.1]], dtype=np.float32)
    assert [json.loads(v) for v in encode_predictions(outputs)] == [
        {"values": [None, 1.5]},
        {"values": [None, 0.10000000149011612]},
    ]
    assert encode_predictions(np.array([[0.1, 2.0]])) == [b'{"values": [0.1, 2.0]}']


def test_multi_dimensional_outputs_keep_their_nesting_as_upstream_writes_them() -> None:
    # Upstream: json.dumps({"values": model.predict(x).tolist()[0]}) per input.
    outputs = np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 4
    encoded = encode_predictions(outputs)
    assert encoded[0] == b'{"values": [[0, 0.25], [0.5, 0.75], [1, 1.25]]}'
    assert [json.loads(v)["values"] for v in encoded] == outputs.tolist()
    with_nan = outputs.copy()
    with_nan[1, 2, 0] = np.nan
    assert json.loads(encode_predictions(with_nan)[1])["values"] == [[1.5, 1.75], [2.0, 2.25], [None, 2.75]]
    assert json.loads(encode_predictions(outputs.astype(np.float64))[0])["values"] == outputs[0].tolist()
