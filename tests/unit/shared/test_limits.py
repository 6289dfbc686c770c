"""shared.limits and the codecs' use of them: no one value stops a stream, no shape wraps."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from fastavro import parse_schema, schemaless_writer
from pydantic import ValidationError

from shared.codecs import decoder_for, each_record
from shared.control import RawConfig
from shared.limits import (
    MAX_BINARY_VALUE_BYTES,
    MAX_JSON_DEPTH,
    MAX_JSON_VALUE_BYTES,
    MAX_SHAPE_ELEMENTS,
    MAX_SHAPE_RANK,
    json_depth_over,
)

GOOD = json.dumps([1.0, 2.0, 3.0]).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


# --- JSON -----------------------------------------------------------------------


def test_deeply_nested_json_is_a_bad_sample_and_the_batch_goes_on() -> None:
    decoder = decoder_for("JSON", {})
    decoded = decoder.decode([nested(100_000), GOOD, b'{"a": ' * 50_000 + b"1" + b"}" * 50_000])
    assert [index for index, _ in decoded.bad] == [0, 2]
    for _, reason in decoded.bad:
        assert f"deeper than the limit of {MAX_JSON_DEPTH} levels" in reason
    np.testing.assert_array_equal(decoded.x, [[1, 2, 3]])


def test_nesting_up_to_the_limit_is_parsed() -> None:
    decoded = decoder_for("JSON", {}).decode([nested(MAX_JSON_DEPTH), nested(MAX_JSON_DEPTH)])
    assert decoded.bad == [] and decoded.x.shape == (2,) + (1,) * MAX_JSON_DEPTH
    assert decoder_for("JSON", {}).decode([nested(MAX_JSON_DEPTH + 1)]).bad[0][1].endswith("levels")


def test_a_10_mb_json_value_is_refused_before_parsing() -> None:
    huge = json.dumps([0.5] * (10 * 2**20 // 5)).encode()
    assert len(huge) > 10 * 10**6
    decoded = decoder_for("JSON", {}).decode([huge, GOOD])
    [(index, reason)] = decoded.bad
    assert index == 0 and "over the limit of 1.0 MiB" in reason
    assert decoded.x.shape == (1, 3)
    # Just under the limit is fine.
    fits = json.dumps([0.5] * ((MAX_JSON_VALUE_BYTES - 2) // 5)).encode()
    assert len(fits) <= MAX_JSON_VALUE_BYTES and decoder_for("JSON", {}).decode([fits]).bad == []


def test_depth_scan_ignores_brackets_in_strings_and_never_recurses() -> None:
    assert not json_depth_over(b'{"label": "' + b"[" * 500 + b'", "v": [1]}', MAX_JSON_DEPTH)
    assert not json_depth_over(b'["\\"' + b"[" * 500 + b'"]', MAX_JSON_DEPTH)  # an escaped quote inside
    assert json_depth_over(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)
    assert not json_depth_over(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)
    assert json_depth_over(nested(10_000_000), MAX_JSON_DEPTH)
    assert not json_depth_over(b"[" * 100 + b'"unterminated', MAX_JSON_DEPTH + 100)


def test_a_number_too_large_for_a_float_is_a_bad_sample() -> None:
    decoded = decoder_for("JSON", {}).decode([b"[" + b"9" * 400 + b"]", GOOD])
    [(index, reason)] = decoded.bad
    assert index == 0 and "not a rectangular list of numbers" in reason


def test_any_exception_of_one_record_marks_it_bad() -> None:
    def sample(raw: bytes | None) -> bytes:
        if raw == b"deep":
            raise RecursionError("maximum recursion depth exceeded")
        if raw == b"huge":
            raise MemoryError()
        return raw or b""

    xs, ys, bad = each_record([b"a", b"deep", b"huge", b"b"], None, sample, sample)
    assert xs == [b"a", b"b"] and ys == []
    assert bad == [(1, "RecursionError: maximum recursion depth exceeded"), (2, "MemoryError: ")]


# --- RAW and Avro --------------------------------------------------------------------


def test_a_huge_raw_value_or_label_is_refused_with_the_limit() -> None:
    decoder = decoder_for("RAW", {"data_type": "uint8", "data_reshape": "2 2", "label_type": "uint8"})
    huge = bytes(MAX_BINARY_VALUE_BYTES + 1)
    decoded = decoder.decode([huge, bytes(4), bytes(4)], [b"\x01", b"\x02", huge])
    assert [index for index, _ in decoded.bad] == [0, 2]
    assert all("over the limit" in reason for _, reason in decoded.bad)
    assert decoded.y is not None and decoded.y.tolist() == [2]


SCHEMA: dict[str, Any] = {"type": "record", "name": "x", "fields": [{"name": "v", "type": "long"}]}


def avro(value: int) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(SCHEMA), {"v": value})
    return out.getvalue()


def test_a_huge_avro_value_and_an_out_of_range_label_are_bad_samples() -> None:
    config = {"data_scheme": json.dumps(SCHEMA), "label_scheme": json.dumps(SCHEMA)}
    decoder = decoder_for("AVRO", config)
    huge = bytes(MAX_BINARY_VALUE_BYTES + 1)
    decoded = decoder.decode([avro(1), huge, avro(3)], [avro(2**63 - 1), avro(5), avro(6)])
    assert [index for index, _ in decoded.bad] == [0, 1]
    assert "does not fit int64" in decoded.bad[0][1] and "over the limit" in decoded.bad[1][1]
    assert decoded.x.tolist() == [[3.0]] and decoded.y is not None and decoded.y.tolist() == [6]


# --- shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", ["4294967296 4294967296", "65536 65536 2", [2**31, 2], "0 4", "-1", "8 0", "1 " * (MAX_SHAPE_RANK + 1)]
)
@pytest.mark.parametrize("field", ["data_reshape", "label_reshape"])
def test_shapes_that_overflow_or_are_not_positive_are_refused_naming_the_field(shape: Any, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        RawConfig.model_validate({field: shape})
    assert raised.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValueError, match=r"over the limit|below 1"):
        decoder_for("RAW", {field: shape})
    with pytest.raises(ValueError, match=r"over the limit|below 1"):
        decoder_for("JSON", {"data_reshape": shape})


def test_the_largest_shape_allowed_is_the_limit() -> None:
    config = RawConfig.model_validate({"data_reshape": f"{MAX_SHAPE_ELEMENTS // 2} 2"})
    assert config.data_shape == (MAX_SHAPE_ELEMENTS // 2, 2)
