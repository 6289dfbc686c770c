"""The statistics window and the prediction encoding (what a replica reports and produces)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from services.inferencer.model import ServedModel
from services.inferencer.routing import encode_predictions
from services.inferencer.stats import StatsWindow, percentiles, predicted_classes


def test_percentiles() -> None:
    assert percentiles(np.zeros(0)) is None
    assert percentiles(np.arange(1, 101, dtype=np.float64)) == pytest.approx([50.5, 95.05, 99.01])
    assert percentiles(np.array([7.0])) == [7.0, 7.0, 7.0]


def test_a_window_counts_then_starts_again() -> None:
    now = [10.0]
    window = StatsWindow(clock=lambda: now[0])
    window.add(3, np.array([1.0, 2.0, 3.0]), np.array([0, 2, 2]))
    window.add(2, np.array([4.0]), np.array([5, 2]))  # one record had no timestamp: no latency
    window.add_errors(1)
    now[0] = 12.0
    stats = window.take(7, "r1", lag=4)
    assert (stats.inference_id, stats.replica, stats.window_s, stats.messages) == (7, "r1", 2.0, 5)
    assert stats.throughput == 2.5 and stats.errors == 1 and stats.lag == 4
    assert stats.latency_p50_ms == 2.5 and stats.latency_p99_ms == pytest.approx(3.97)
    assert stats.predicted == {"0": 1, "2": 3, "5": 1}
    now[0] = 13.0
    empty = window.take(7, "r1")
    assert empty.messages == 0 and empty.latency_p50_ms is None and empty.predicted == {} and empty.window_s == 1.0


def test_only_outputs_of_several_values_are_classes() -> None:
    classes = predicted_classes(np.array([[0.1, 0.9], [0.8, 0.2]]))
    assert classes is not None and classes.tolist() == [1, 0]
    assert predicted_classes(np.array([[0.3], [0.7]])) is None  # regression (or sigmoid): not counted
    assert predicted_classes(np.zeros((0, 10))) is None


def test_predictions_are_json_numbers_exact_for_their_type() -> None:
    float32 = np.array([[0.1, 1.0, -2.5e-7], [3.0, 0.0, 1e30]], dtype=np.float32)
    encoded = encode_predictions(float32)
    assert [json.loads(e) for e in encoded] == [
        {"values": [0.100000001, 1, -2.49999999e-07]},
        {"values": [3, 0, 1.00000002e30]},
    ]
    back = np.array([json.loads(e)["values"] for e in encoded], dtype=np.float32)
    np.testing.assert_array_equal(back, float32)  # %.9g round-trips float32
    assert encode_predictions(np.array([0.25, 0.5])) == [b'{"values": [0.25]}', b'{"values": [0.5]}']
    assert encode_predictions(np.array([[1, 2]])) == [b'{"values": [1.0, 2.0]}']
    assert encode_predictions(np.array([[np.nan, np.inf, 0.5]], dtype=np.float32)) == [b'{"values": [null, null, 0.5]}']
    # Nested as the model output it (upstream: predict(x).tolist()[0]), not flattened.
    assert encode_predictions(np.ones((2, 2, 2), dtype=np.float32))[0] == b'{"values": [[1, 1], [1, 1]]}'


class Fixed(ServedModel):
    framework = "test"
    device = "cpu"
    parameters = 0
    input_shape = (8, 8)
    input_dtype = np.dtype(np.float32)

    def predict(self, x: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        return [x]


def test_samples_are_cast_and_reshaped_to_what_the_model_takes() -> None:
    model = Fixed()
    prepared = model.prepare(np.arange(2 * 64, dtype=np.uint8).reshape(2, 64))
    assert prepared.shape == (2, 8, 8) and prepared.dtype == np.float32 and prepared.flags.c_contiguous
    with pytest.raises(ValueError, match=r"takes samples of shape \(8, 8\)"):
        model.prepare(np.zeros((1, 63), dtype=np.uint8))
