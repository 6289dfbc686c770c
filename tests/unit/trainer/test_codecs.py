"""shared.codecs: RAW, Avro, JSON and Telegraf training batches, bad samples skipped and counted."""

from __future__ import annotations

import io
import json
from typing import Any

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
    ("alias", "dtype"),
    [("half", np.float16), ("float", np.float64), ("float32", np.float32), ("double", np.float64), ("int32", np.int32)],
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


# --- JSON and TELEGRAF_STR_JSON training streams ---------------------------------------


def upstream_telegraf(value: bytes) -> Any:
    """Upstream's TELEGRAF_STR_JSON decoder, as its source writes it: the reference for ours."""
    return json.loads(json.loads(value)["fields"]["value"])


def telegraf(document: Any, **tags: str) -> bytes:
    """A Telegraf JSON metric as the MQTT consumer with the string ``value`` parser emits it."""
    metric = {"fields": {"value": json.dumps(document)}, "name": "mqtt_consumer", "tags": tags, "timestamp": 1}
    return json.dumps(metric).encode()


def test_json_training_labels_come_from_the_keys_by_default() -> None:
    decoder = decoder_for("JSON", {})
    values = [json.dumps([i, i + 0.5]).encode() for i in range(4)]
    decoded = decoder.decode(values, [b"0", b"1", b"1", b"0"])
    assert decoded.bad == [] and decoded.x.dtype == np.float32 and decoded.x.shape == (4, 2)
    np.testing.assert_array_equal(decoded.x, [json.loads(v) for v in values])  # upstream: json.loads(value)
    assert decoded.y is not None and decoded.y.dtype == np.int64 and decoded.y.tolist() == [0, 1, 1, 0]
    missing = decoder.decode(values[:2], [b"1", None])
    assert missing.bad == [(1, "no label (the record has no key)")] and missing.x.shape == (1, 2)


def test_json_training_label_and_data_fields() -> None:
    decoder = decoder_for("JSON", {"label_field": "label", "data_field": "data", "data_reshape": "2 2"})
    values = [
        b'{"data": [1, 2, 3, 4], "label": 1}',
        b'{"data": [[5, 6], [7, 8]], "label": 0, "note": "ignored"}',
        b'{"data": [1, 2, 3, 4]}',
        b'{"label": 1}',
        b"[1, 2, 3, 4]",
        b'{"data": [1, 2, 3, 4], "label": "cat"}',
    ]
    decoded = decoder.decode(values, [None, b"junk", None, None, None, None])  # keys play no part
    assert decoded.x.shape == (2, 2, 2) and decoded.y is not None and decoded.y.tolist() == [1, 0]
    assert [(i, reason) for i, reason in decoded.bad][:4] == [
        (2, "value has no label field 'label'"),
        (3, "value has no data field 'data'"),
        (4, "value is a JSON list, not an object with the field 'label'"),
        (5, "label is a JSON str, not numbers"),
    ]
    # Values to predict may come without the label: the same config decodes them.
    predict = decoder.decode([b'{"data": [1, 2, 3, 4]}'])
    assert predict.bad == [] and predict.y is None and predict.x.shape == (1, 2, 2)


def test_json_training_object_without_data_field_is_the_rest_of_the_object() -> None:
    decoder = decoder_for("JSON", {"label_field": "y"})
    decoded = decoder.decode([b'{"a": 1, "y": 0.5, "b": 2}', b'{"y": 1.5, "a": 3, "b": 4}'], [None, None])
    assert decoded.x.tolist() == [[1, 2], [3, 4]]
    assert decoded.y is not None and decoded.y.dtype == np.float32 and decoded.y.tolist() == [0.5, 1.5]


def test_telegraf_training_decodes_as_upstream_and_takes_the_label_field() -> None:
    documents = [{"data": [0.1 * i, 0.2 * i, 0.3], "label": i % 2} for i in range(5)]
    values = [telegraf(d, topic="sensors/1") for d in documents]
    assert [upstream_telegraf(v) for v in values] == documents
    decoded = decoder_for("TELEGRAF_STR_JSON", {"label_field": "label", "data_field": "data"}).decode(
        values, [None] * len(values)
    )
    assert decoded.bad == [] and decoded.x.shape == (5, 3)
    np.testing.assert_allclose(decoded.x, np.array([d["data"] for d in documents], dtype=np.float32))
    assert decoded.y is not None and decoded.y.tolist() == [0, 1, 0, 1, 0]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"name": "cpu", "fields": {"usage": 3}}', "with a field 'value'"),
        (b'{"fields": {"value": 3}}', "fields.value is a JSON int, not a string holding JSON"),
        (b'{"fields": {"value": "not json"}}', "fields.value is not UTF-8 JSON"),
        (b"[1, 2, 3]", "with a field 'value'"),
        (b"\xff", "not UTF-8 JSON"),
    ],
)
def test_telegraf_values_that_are_not_telegraf_metrics_are_bad(raw: bytes, reason: str) -> None:
    decoded = decoder_for("TELEGRAF_STR_JSON", {}).decode([raw, telegraf([1, 2, 3])], [b"0", b"1"])
    assert decoded.x.tolist() == [[1, 2, 3]] and decoded.y is not None and decoded.y.tolist() == [1]
    assert len(decoded.bad) == 1 and decoded.bad[0][0] == 0 and reason in decoded.bad[0][1]


def test_a_whole_batch_and_record_by_record_decode_the_same() -> None:
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(50, 3, 2))
    values = [json.dumps(s.tolist()).encode() for s in samples]
    keys = [str(int(k)).encode() for k in rng.integers(0, 3, 50)]
    whole = decoder_for("JSON", {}).decode(values, keys)
    # One bad record sends the batch record by record: the others decode the same.
    mixed = decoder_for("JSON", {}).decode([*values, b"[1, 2]"], [*keys, b"0"])
    assert whole.bad == [] and [i for i, _ in mixed.bad] == [50]
    np.testing.assert_array_equal(whole.x, mixed.x)
    assert whole.y is not None and mixed.y is not None
    np.testing.assert_array_equal(whole.y, mixed.y)
    np.testing.assert_allclose(whole.x, samples.astype(np.float32))
