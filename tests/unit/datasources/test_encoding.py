"""What the data-source sinks put on the wire, checked without a broker: RAW bytes, Avro
records, the control message key, and the ranges taken from acknowledgements."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastavro import parse_schema, schemaless_reader

from shared.control import ControlMessage, TopicRange, deployment_id_from_key, key_for_deployment
from shared.datasources import (
    AckRanges,
    AsyncAvroSink,
    AsyncRawSink,
    AvroEncoder,
    RawEncoder,
    SinkError,
    record_schema,
)
from shared.datasources.arguments import check_rates, shape_text
from shared.datasources.ranges import ranges_text
from shared.datasources.send import read_table

# --- RAW ---------------------------------------------------------------------


def test_raw_value_is_the_sample_in_c_order_and_key_the_label() -> None:
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    encoder = RawEncoder("uint8", "uint8")
    value, key = encoder.encode(image, np.uint8(7))
    assert value == image.tobytes() and len(value) == 64
    assert key == b"\x07"
    assert encoder.input_config == {
        "data_type": "uint8",
        "label_type": "uint8",
        "data_reshape": "8 8",
        "label_reshape": "1",
    }


def test_raw_casts_to_the_declared_types_and_writes_c_order_for_any_layout() -> None:
    sample = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    value, key = RawEncoder("float32", "float32").encode(sample, 2)
    assert value == np.arange(6, dtype=np.float32).tobytes()  # row by row, as C order
    assert key == np.float32(2).tobytes()
    assert np.frombuffer(value, np.float32).reshape(2, 3).tolist() == sample.tolist()


def test_raw_types_and_shapes_default_to_the_first_sample() -> None:
    encoder = RawEncoder()
    value, key = encoder.encode(np.ones((3, 4), dtype=np.int16), np.int64(1))
    assert len(value) == 24 and key == np.int64(1).tobytes()
    assert encoder.input_config == {
        "data_type": "int16",
        "label_type": "int64",
        "data_reshape": "3 4",
        "label_reshape": "1",
    }
    assert ControlMessage(topic="t:0:0:1", input_format="RAW", input_config=encoder.input_config).raw_config()


def test_raw_no_label_means_no_key() -> None:
    value, key = RawEncoder("float32").encode([1.0, 2.0])
    assert key is None and value == np.array([1, 2], np.float32).tobytes()


def test_raw_whole_floats_may_go_as_integers() -> None:
    # sklearn's digits are float64 holding 0..16.
    value, _ = RawEncoder("uint8").encode(np.array([[0.0, 16.0]]))
    assert value == b"\x00\x10"


def test_raw_a_sample_of_another_shape_names_both_shapes() -> None:
    encoder = RawEncoder("uint8", "uint8")
    encoder.encode(np.zeros((8, 8)), 1)
    with pytest.raises(ValueError, match=r"\(7, 8\).*\(8, 8\)"):
        encoder.encode(np.zeros((7, 8)), 1)


def test_raw_refuses_lossy_casts_and_values_out_of_range() -> None:
    with pytest.raises(ValueError, match="non-integer values; it cannot be sent as uint8"):
        RawEncoder("uint8").encode(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"300\.\.300 do not fit in uint8"):
        RawEncoder("float32", "uint8").encode([1.0], 300)
    with pytest.raises(ValueError, match="float64 cannot be sent as bool"):
        RawEncoder("bool").encode([1.0])
    with pytest.raises(ValueError, match="must be numeric"):
        RawEncoder().encode(["a", "b"])
    with pytest.raises(ValueError, match="unknown data type"):
        RawEncoder("uint9")


def test_raw_reshape_must_hold_the_sample() -> None:
    encoder = RawEncoder("uint8", data_reshape="8 8")
    encoder.encode(np.zeros(64))  # flat samples with an announced shape are fine
    assert encoder.input_config["data_reshape"] == "8 8"
    with pytest.raises(ValueError, match="needs 64"):
        RawEncoder("uint8", data_reshape=[8, 8]).encode(np.zeros(63))
    with pytest.raises(ValueError, match="not space-separated integers"):
        RawEncoder("uint8", data_reshape="eight")


def test_raw_bytes_pass_through_with_checks() -> None:
    # Upstream's examples send x.tobytes() with the types declared.
    encoder = RawEncoder("uint8", "uint8", data_reshape="28 28")
    value, key = encoder.encode(bytes(784), b"\x05")
    assert value == bytes(784) and key == b"\x05"
    with pytest.raises(ValueError, match="differs from the first sample's 784 bytes"):
        encoder.encode(bytes(783), b"\x05")
    with pytest.raises(ValueError, match="data_type must be given"):
        RawEncoder().encode(b"\x00")
    with pytest.raises(ValueError, match="whole number of float32"):
        RawEncoder("float32").encode(b"\x00\x00\x00")


def test_shape_text_matches_upstream() -> None:
    assert shape_text((8, 8)) == "8 8"
    assert shape_text((30,)) == "30"
    assert shape_text(()) == "1"


# --- the control message key and rates ---------------------------------------


@pytest.mark.parametrize(
    ("deployment_id", "key"),
    [(0, b"\x00"), (1, b"\x01"), (255, b"\xff"), (256, b"\x01\x00"), (300, b"\x01\x2c"), (70_000, b"\x01\x11\x70")],
)
def test_key_for_deployment_is_shortest_big_endian(deployment_id: int, key: bytes) -> None:
    assert key_for_deployment(deployment_id) == key
    assert deployment_id_from_key(key) == deployment_id


def test_rates_must_leave_samples_to_train_on() -> None:
    check_rates(0.1, 0.1)
    with pytest.raises(ValueError, match="below 1"):
        check_rates(0.5, 0.5)
    with pytest.raises(ValueError, match="test_rate"):
        check_rates(0.1, -0.1)
    with pytest.raises(ValueError, match="below 1"):
        AsyncRawSink("127.0.0.1:1", "t", 1, validation_rate=0.7, test_rate=0.3)


def test_sink_arguments_are_checked_before_connecting() -> None:
    with pytest.raises(ValueError, match="deployment_id"):
        AsyncRawSink("127.0.0.1:1", "t", -1)
    with pytest.raises(ValueError, match="topic is required"):
        AsyncRawSink("127.0.0.1:1", "", 1)
    sink = AsyncRawSink(["127.0.0.1:1", "127.0.0.1:2"], "t", "42")  # upstream documents ids as str
    assert sink.deployment_id == 42 and sink.boostrap_servers == "127.0.0.1:1,127.0.0.1:2"
    assert AsyncRawSink(bootstrap_servers="h:9", topic="t", deployment_id=1).boostrap_servers == "h:9"


def test_the_online_form_names_the_bare_topic() -> None:
    sink = AsyncRawSink("h:9", "live", 3, "float32", "uint8", data_reshape="4", validation_rate=0.2)
    message = sink.build_control_message(online=True)
    assert (message.topic, message.total_msg, message.incremental) == ("live", None, True)
    assert message.input_config == {
        "data_type": "float32",
        "label_type": "uint8",
        "data_reshape": "4",
        "label_reshape": None,
    }
    with pytest.raises(SinkError, match="nothing to announce"):
        sink.build_control_message()


# --- ranges from acknowledgements --------------------------------------------


def test_ranges_are_first_and_last_acknowledged_offset_per_partition() -> None:
    acks = AckRanges()
    # Out of order, two partitions, and partition 1 starting where an older data set ended.
    for partition, offset in [(0, 2), (1, 100), (0, 0), (0, 1), (1, 101), (0, 3)]:
        acks.record(partition, offset)
    assert acks.ranges("d") == [TopicRange("d", 0, 0, 4), TopicRange("d", 1, 100, 102)]
    assert ranges_text(acks.ranges("d")) == "d:0:0:4,d:1:100:102"
    assert acks.count == acks.span == 6


def test_ranges_span_gaps_and_skip_partitions_without_data() -> None:
    acks = AckRanges()
    for partition, offset in [(3, 10), (3, 14), (0, 5)]:
        acks.record(partition, offset)  # offsets 11..13 of partition 3 came from someone else
    assert ranges_text(acks.ranges("d")) == "d:0:5:6,d:3:10:15"
    assert (acks.count, acks.span) == (3, 6)
    assert AckRanges().ranges("d") == []
    message = ControlMessage(topic=ranges_text(acks.ranges("d")), input_format="RAW", total_msg=3)
    assert [r.count for r in message.ranges()] == [1, 5]


# --- AVRO --------------------------------------------------------------------

DATA_SCHEMA = record_schema("data", {"mean radius": "float", "mean texture": "double", "count": "int"})
LABEL_SCHEMA = {"type": "record", "name": "label", "fields": [{"name": "benign", "type": "boolean"}]}


def read_avro(schema_text: str, payload: bytes) -> object:
    return schemaless_reader(io.BytesIO(payload), parse_schema(json.loads(schema_text)), None)


def test_avro_records_roundtrip_through_schemaless_reader() -> None:
    encoder = AvroEncoder(json.dumps(DATA_SCHEMA), json.dumps(LABEL_SCHEMA))
    data = {"mean_radius": np.float32(17.5), "mean_texture": np.float64(10.38), "count": np.int64(3)}
    value, key = encoder.encode(data, {"benign": np.bool_(False)})
    assert key is not None
    assert read_avro(encoder.data_scheme, value) == {"mean_radius": 17.5, "mean_texture": 10.38, "count": 3}
    assert read_avro(encoder.input_config["label_scheme"], key) == {"benign": False}
    assert not value.startswith(b"Obj")  # schemaless: no container header


def test_avro_a_record_that_does_not_fit_names_the_field() -> None:
    encoder = AvroEncoder(json.dumps(DATA_SCHEMA))
    with pytest.raises(ValueError, match="count"):
        encoder.encode_data({"mean_radius": 1.0, "mean_texture": 2.0, "count": "three"})
    with pytest.raises(ValueError, match="no label schema"):
        encoder.encode({"mean_radius": 1.0, "mean_texture": 2.0, "count": 1}, {"benign": True})


def test_avro_sink_takes_schemas_as_dicts_text_or_files(tmp_path: Path) -> None:
    (tmp_path / "data.avsc").write_text(json.dumps(DATA_SCHEMA))
    from_file = AsyncAvroSink("h:9", "t", 1, tmp_path / "data.avsc", description="upstream style")
    from_dict = AsyncAvroSink("h:9", "t", 1, data_scheme=DATA_SCHEMA, label_scheme=json.dumps(LABEL_SCHEMA))
    assert from_file.input_config == {"data_scheme": json.dumps(DATA_SCHEMA), "label_scheme": None}
    assert json.loads(from_dict.input_config["label_scheme"]) == LABEL_SCHEMA
    with pytest.raises(ValueError, match="needs a data schema"):
        AsyncAvroSink("h:9", "t", 1)
    with pytest.raises(ValueError, match="not a valid Avro schema"):
        AsyncAvroSink("h:9", "t", 1, data_scheme={"type": "nosuchtype"})


def test_record_schema_makes_valid_unique_names() -> None:
    schema = record_schema("my data", {"a b": "float", "a-b": "float", "1st": "int"})
    assert [f["name"] for f in schema["fields"]] == ["a_b", "a_b_2", "_1st"]
    parse_schema(schema)


# --- reading files for `kafkaml send` ----------------------------------------


def test_csv_label_column_by_name_or_index(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,0\n3,4,1\n")
    for column in ("label", 2, "2", "-1", -1):
        table = read_table(path, label_column=column, labels_path=None, data_type="float32", label_type="uint8")
        assert table.features.tolist() == [[1, 2], [3, 4]] and table.features.dtype == np.float32
        assert table.labels is not None and table.labels.tolist() == [0, 1]
        assert table.feature_names == ["a", "b"] and table.label_name == "label"
    with pytest.raises(ValueError, match="no column 'nope'"):
        read_table(path, label_column="nope", labels_path=None, data_type="float32", label_type="uint8")


def test_csv_errors_name_the_column(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,diagnosis\n1,M\n2,B\n")
    with pytest.raises(ValueError, match="column 'diagnosis' holds 'M'"):
        read_table(path, label_column="diagnosis", labels_path=None, data_type="float32", label_type="uint8")
    path.write_text("a,y\n1.5,1\n")
    with pytest.raises(ValueError, match="column 'a' holds non-integer"):
        read_table(path, label_column="y", labels_path=None, data_type="uint8", label_type="uint8")


def test_arrays_from_npy_pairs_and_npz(tmp_path: Path) -> None:
    x, y = np.zeros((5, 8, 8), np.uint8), np.arange(5, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.savez(tmp_path / "bad.npz", images=x)
    options: dict[str, Any] = {"label_column": None, "data_type": "uint8", "label_type": "uint8"}
    pair = read_table(tmp_path / "x.npy", labels_path=tmp_path / "y.npy", **options)
    packed = read_table(tmp_path / "d.npz", labels_path=None, **options)
    for table in (pair, packed):
        assert table.features.shape == (5, 8, 8) and table.labels is not None and table.labels.tolist() == y.tolist()
    with pytest.raises(ValueError, match="no array 'x' \\(it has: images\\)"):
        read_table(tmp_path / "bad.npz", labels_path=None, **options)
