"""The live view's reading of a prediction record: one row of numbers, whatever the output's shape."""

from __future__ import annotations

from services.api.live import decode_prediction


def test_a_vector_is_one_row() -> None:
    assert decode_prediction(b'{"values": [0.1, 0.9]}') == [[0.1, 0.9]]


def test_a_nested_output_is_flattened_in_order() -> None:
    assert decode_prediction(b'{"values": [[1, 2], [3, null]]}') == [[1, 2, 3, None]]


def test_what_is_not_a_prediction_is_nothing() -> None:
    assert decode_prediction(b"not json") == []
    assert decode_prediction(b'{"values": 3}') == []
    assert decode_prediction(None) == []
