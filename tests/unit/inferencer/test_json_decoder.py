"""shared.codecs' JSON and TELEGRAF_STR_JSON values to predict: the accepted forms, reshaping, bad samples skipped."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from shared.codecs import JsonDecoder, decoder_for


def encode(*documents: Any) -> list[bytes | None]:
    return [json.dumps(d).encode() for d in documents]


def test_the_three_forms_give_the_same_vector() -> None:
    decoder = decoder_for("JSON", {})
    assert isinstance(decoder, JsonDecoder)
    decoded = decoder.decode(encode([1, 2.5, 3], {"values": [1, 2.5, 3]}, {"a": 1, "b": 2.5, "c": 3}))
    assert decoded.bad == [] and decoded.y is None
    assert decoded.x.dtype == np.float32 and decoded.x.shape == (3, 3)
    np.testing.assert_array_equal(decoded.x, [[1, 2.5, 3]] * 3)


def test_nested_lists_keep_their_shape_and_objects_flatten_in_order() -> None:
    decoded = decoder_for("JSON", {}).decode(encode([[1, 2], [3, 4]], {"values": [[5, 6], [7, 8]]}))
    assert decoded.x.shape == (2, 2, 2)
    obj = decoder_for("JSON", {}).decode(encode({"x": [1, 2], "flag": True, "pos": {"lat": 3, "lon": 4}}))
    np.testing.assert_array_equal(obj.x, [[1, 2, 1, 3, 4]])


def test_data_reshape_and_data_type() -> None:
    decoder = decoder_for("JSON", {"data_reshape": "2 2", "data_type": "float64"})
    decoded = decoder.decode(encode([1, 2, 3, 4], [[5, 6], [7, 8]], [1, 2, 3]))
    assert decoded.x.shape == (2, 2, 2) and decoded.x.dtype == np.float64
    assert decoded.bad == [(2, "3 numbers, expected 4 for JSON numbers as float64 (2, 2)")]
    assert decoder.sample_shape == (2, 2)


def test_without_a_shape_the_first_good_sample_sets_it() -> None:
    decoder = decoder_for("JSON", {})
    decoded = decoder.decode([b"not json", *encode([1, 2], [1, 2, 3], {"values": [3, 4]})])
    assert decoded.x.tolist() == [[1, 2], [3, 4]]
    assert [index for index, _ in decoded.bad] == [0, 2]
    assert "not UTF-8 JSON" in decoded.bad[0][1] and "first sample" in decoded.bad[1][1]
    assert decoded.good_indices == [1, 3]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "no value"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b'"text"', "JSON str"),
        (b"true", "JSON bool"),
        (b"[[1, 2], [3]]", "not a rectangular list"),
        (b'[1, "a"]', "not a rectangular list"),
        (b'{"a": "x"}', "is a str"),
        (b'{"a": null}', "is null"),
    ],
)
def test_bad_values_are_skipped_with_the_reason(raw: bytes | None, reason: str) -> None:
    decoded = decoder_for("JSON", {"data_reshape": "2"}).decode([raw, b"[1, 2]"])
    assert decoded.x.tolist() == [[1, 2]]
    assert len(decoded.bad) == 1 and decoded.bad[0][0] == 0 and reason in decoded.bad[0][1]


def test_an_empty_batch_and_labels() -> None:
    decoder = decoder_for("JSON", {"data_reshape": "3"})
    assert decoder.decode([]).x.shape == (0, 3)
    decoded = decoder.decode(encode([1, 2, 3], [4, 5, 6]), [b"1", b"0"])
    assert decoded.y is not None and decoded.y.dtype == np.int64 and decoded.y.tolist() == [1, 0]


def test_unknown_formats_name_the_known_ones() -> None:
    with pytest.raises(ValueError, match="RAW, AVRO, JSON or TELEGRAF_STR_JSON"):
        decoder_for("CSV", {})


def test_upstreams_batch_of_one_form_fits_the_models_shape() -> None:
    # Upstream hands json.loads(value) straight to model.predict: its clients send [[...]].
    decoder = decoder_for("JSON", {"data_reshape": "3"})
    decoded = decoder.decode(encode([[1, 2, 3]], [4, 5, 6]))
    assert decoded.bad == [] and decoded.x.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_telegraf_values_to_predict() -> None:
    def metric(document: Any) -> bytes:
        return json.dumps({"fields": {"value": json.dumps(document)}, "name": "mqtt_consumer", "tags": {}}).encode()

    decoder = decoder_for("TELEGRAF_STR_JSON", {"data_reshape": "2"})
    decoded = decoder.decode([metric([1, 2]), metric({"values": [3, 4]}), b'{"fields": {}}', metric([5])])
    assert decoded.x.tolist() == [[1, 2], [3, 4]] and decoded.y is None
    assert [index for index, _ in decoded.bad] == [2, 3]
    assert "fields.value" in decoded.bad[0][1] and "expected 2" in decoded.bad[1][1]
    assert decoder.describe() == "TELEGRAF_STR_JSON numbers as float32 (2,)"


def test_json_configs_are_checked() -> None:
    with pytest.raises(ValueError, match="both 'x'"):
        decoder_for("JSON", {"label_field": "x", "data_field": "x"})
    with pytest.raises(ValueError, match="data_type"):
        decoder_for("TELEGRAF_STR_JSON", {"data_type": "nosuchtype"})
