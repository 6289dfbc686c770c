"""shared.codecs: RAW and Avro batches, bad samples skipped and counted."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastavro import parse_schema, schemaless_writer

from shared.codecs import AvroDecoder, RawDecoder, decoder_for, too_many_bad


def test_raw_uint8_images_and_scalar_labels() -> None:
    images = np.arange(3 * 64, dtype=np.uint8).reshape(3, 8, 8)
    decoder = decoder_for(
        "RAW", {"data_type": "uint8", "label_type": "uint8", "data_reshape": "8 8", "label_reshape": "1"}
    )
    decoded = decoder.decode([im.tobytes() for im in images], [bytes([7]), bytes([0]), bytes([9])])
    assert decoded.x.shape == (3, 8, 8) and decoded.x.dtype == np.uint8
    np.testing.assert_array_equal(decoded.x, images)
    assert decoded.y is not None and decoded.y.shape == (3,)
    assert decoded.y.tolist() == [7, 0, 9]
    assert decoded.bad == []


@pytest.mark.parametrize(
    ("alias", "dtype"), [("half", np.float16), ("float", np.float32), ("double", np.float64), ("int32", np.int32)]
)
def test_raw_dtype_aliases(alias: str, dtype: type) -> None:
    values = np.linspace(-1, 1, 12).astype(dtype).reshape(2, 2, 3)
    decoder = decoder_for(
        "RAW", {"data_type": alias, "label_type": "double", "data_reshape": "2 3", "label_reshape": ""}
    )
    decoded = decoder.decode([v.tobytes() for v in values], [np.float64(0.5).tobytes(), np.float64(2).tobytes()])
    assert decoded.x.dtype == dtype and decoded.x.shape == (2, 2, 3)
    np.testing.assert_array_equal(decoded.x, values)
    assert decoded.y is not None and decoded.y.dtype == np.float64 and decoded.y.tolist() == [0.5, 2.0]


@pytest.mark.parametrize("shape", [None, "", "1"])
def test_raw_scalar_shapes(shape: str | None) -> None:
    decoder = decoder_for("RAW", {"data_type": "float32", "data_reshape": shape, "label_type": "uint8"})
    decoded = decoder.decode([np.float32(1.5).tobytes()], None)
    assert decoded.x.shape == (1,) and decoded.x[0] == 1.5
    assert decoded.y is None  # values to predict: no keys


def test_raw_wrong_size_value_or_label_is_bad_and_skipped() -> None:
    decoder = decoder_for("RAW", {"data_type": "uint8", "data_reshape": "8 8", "label_type": "uint8"})
    good = bytes(64)
    decoded = decoder.decode([good, bytes(63), good, None, good], [b"\x01", b"\x02", b"\x01\x02", b"\x03", None])
    assert len(decoded.x) == 1 and decoded.y is not None and decoded.y.tolist() == [1]
    reasons = dict(decoded.bad)
    assert sorted(reasons) == [1, 2, 3, 4]
    assert reasons[1] == "63 bytes, expected 64 for uint8 (8, 8)"
    assert "label of 2 bytes, expected 1" in reasons[2]
    assert reasons[3] == "no value"
    assert "no label" in reasons[4]
    assert decoded.good_indices == [0]


def test_raw_empty_batch() -> None:
    decoder = decoder_for("RAW", {"data_type": "uint8", "data_reshape": "2 2"})
    assert isinstance(decoder, RawDecoder)
    result = decoder.decode([], [])
    assert result.x.shape == (0, 2, 2) and result.y is not None and len(result.y) == 0


DATA_SCHEMA = {
    "type": "record",
    "name": "features",
    "fields": [
        {"name": "a", "type": "float"},
        {"name": "b", "type": {"type": "array", "items": "int"}},
        {"name": "c", "type": "double"},
    ],
}
BOOL_LABEL = {"type": "record", "name": "label", "fields": [{"name": "malignant", "type": "boolean"}]}


def avro(schema: dict[str, object], record: dict[str, object]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), record)
    return out.getvalue()


def avro_config(label: dict[str, object] = BOOL_LABEL) -> dict[str, str]:
    return {"data_scheme": json.dumps(DATA_SCHEMA), "label_scheme": json.dumps(label)}


def test_avro_record_flattens_in_schema_order_and_boolean_label_is_0_1() -> None:
    decoder = decoder_for("AVRO", avro_config())
    assert isinstance(decoder, AvroDecoder)
    values = [
        avro(DATA_SCHEMA, {"c": 3.0, "a": 1.0, "b": [5, 6]}),
        avro(DATA_SCHEMA, {"a": -1.0, "b": [0, 1], "c": 0.0}),
    ]
    keys = [avro(BOOL_LABEL, {"malignant": True}), avro(BOOL_LABEL, {"malignant": False})]
    decoded = decoder.decode(values, keys)
    assert decoded.x.dtype == np.float32 and decoded.x.tolist() == [[1, 5, 6, 3], [-1, 0, 1, 0]]
    assert decoded.y is not None and decoded.y.shape == (2,) and decoded.y.tolist() == [1, 0]
    assert np.issubdtype(decoded.y.dtype, np.integer)
    assert decoder.sample_shape == (4,)


def test_avro_multi_field_label_is_a_float_vector() -> None:
    label = {"type": "record", "name": "l", "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "float"}]}
    decoder = decoder_for("AVRO", avro_config(label))
    decoded = decoder.decode([avro(DATA_SCHEMA, {"a": 0.0, "b": [], "c": 1.0})], [avro(label, {"x": 2, "y": 0.5})])
    assert decoded.y is not None and decoded.y.dtype == np.float32 and decoded.y.tolist() == [[2.0, 0.5]]


def test_undecodable_avro_is_bad_and_skipped() -> None:
    decoder = decoder_for("AVRO", avro_config())
    good = avro(DATA_SCHEMA, {"a": 1.0, "b": [2, 3], "c": 4.0})
    label = avro(BOOL_LABEL, {"malignant": True})
    values = [good, b"\xff\x01", good + b"\x00\x00", avro(DATA_SCHEMA, {"a": 1.0, "b": [2], "c": 4.0}), good, good]
    keys = [label, label, label, label, b"", None]
    decoded = decoder.decode(values, keys)
    assert len(decoded.x) == 1
    reasons = dict(decoded.bad)
    assert sorted(reasons) == [1, 2, 3, 4, 5]
    assert "not Avro of the announced schema" in reasons[1]
    assert "left over" in reasons[2]
    assert "3 values, the first one had 4" in reasons[3]
    assert "label" in reasons[4] and "no label" in reasons[5]


def test_unknown_format_and_the_bad_policy() -> None:
    with pytest.raises(ValueError, match="unknown input format"):
        decoder_for("CSV", {})
    assert not too_many_bad(10, 100) and too_many_bad(11, 100)
