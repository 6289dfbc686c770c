"""The pure parts of incremental training: when a window closes, how windows chain, the improvement
rule that makes a version, the per-window split, and how the control message's topic is read."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from services.trainer.data.errors import DataError
from services.trainer.data.window import Window, WindowRule, chain, group_id, stream_topic
from services.trainer.incremental import DEFAULT_PARAMS, improved, window_split


def records(*offsets: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=o, key=bytes([o % 10]), value=bytes([o])) for o in offsets]


def test_a_window_closes_at_its_sample_count_or_its_time_whichever_first() -> None:
    both = WindowRule(samples=100, seconds=5.0)
    assert not both.full(0, None, 100.0)  # an empty window never closes: it waits for its first record
    assert not both.full(99, 10.0, 14.9)
    assert both.full(100, 10.0, 10.1)
    assert both.full(1, 10.0, 15.0)
    assert not WindowRule(samples=None, seconds=5.0).full(10_000, 10.0, 14.0)
    assert not WindowRule(samples=100, seconds=None).full(99, 0.0, 1e9)
    assert both.room(60) == 40 and both.room(100) == 0
    assert WindowRule(samples=None, seconds=1.0).room(5) > 0


def test_windows_chain_exactly_from_the_position_before_them_gaps_included() -> None:
    first = Window()
    first.add(0, 0, records(0, 1, 2))
    first.add(1, 5, records(5, 6))
    first.add(0, 3, records(4))  # offset 3 is a gap (a transaction marker): still covered
    assert len(first) == 6
    assert [(s.partition, s.start, s.end) for s in first.spans()] == [(0, 0, 5), (1, 5, 7)]
    positions = chain({0: 0, 1: 5, 2: 9}, first)
    assert positions == {0: 5, 1: 7, 2: 9}
    second = Window()
    second.add(1, positions[1], records(7))
    assert [(s.partition, s.start, s.end) for s in second.spans()] == [(1, 7, 8)]
    assert chain(positions, second) == {0: 5, 1: 8, 2: 9}


@pytest.mark.parametrize(
    ("value", "reference", "change", "improvement", "expected"),
    [
        (0.5, None, "up", 0.1, True),  # no version yet: the first is one
        (0.61, 0.5, "up", 0.1, True),
        (0.6, 0.5, "up", 0.1, False),  # by exactly the improvement: not more than it
        (0.4, 0.5, "up", 0.0, False),
        (0.51, 0.5, "up", 0.0, True),
        (0.3, 0.5, "down", 0.1, True),  # a loss going down
        (0.45, 0.5, "down", 0.1, False),
        (0.7, 0.5, "down", 0.0, False),
        (None, 0.5, "up", 0.0, False),  # the metric missing from a window (no samples)
        (float("nan"), 0.5, "up", 0.0, False),
    ],
)
def test_a_version_needs_the_metric_to_move_by_more_than_the_improvement(
    value: float | None, reference: float | None, change: str, improvement: float, expected: bool
) -> None:
    assert improved(value, reference, change, improvement) is expected


def test_each_window_holds_out_its_validation_rate_the_same_way_every_time() -> None:
    train, validation = window_split(100, 0.1, 3)
    assert len(train) == 90 and len(validation) == 10
    assert sorted({*train.tolist(), *validation.tolist()}) == list(range(100))
    again, _ = window_split(100, 0.1, 3)
    assert np.array_equal(train, again)
    other, _ = window_split(100, 0.1, 4)
    assert not np.array_equal(train, other)
    assert [len(p) for p in window_split(7, 0.0, 1)] == [7, 0]


def test_the_topic_is_a_bare_name_or_the_ranges_of_one_topic() -> None:
    assert stream_topic("digits") == ("digits", {})
    assert stream_topic("digits:0:10:20,digits:1:3:9") == ("digits", {0: 10, 1: 3})
    with pytest.raises(DataError, match="one topic"):
        stream_topic("a:0:0:1,b:0:0:1")
    with pytest.raises(DataError, match="neither a topic name"):
        stream_topic("a:0:1")
    with pytest.raises(DataError, match="non-integer"):
        stream_topic("a:x:0:1")


def test_upstream_defaults_apply_to_an_incremental_control_message() -> None:
    assert DEFAULT_PARAMS.stream_timeout_s == 60 and DEFAULT_PARAMS.improvement == 0.1
    assert DEFAULT_PARAMS.monitoring_metric is None and DEFAULT_PARAMS.window_s == 10
    assert group_id("job-1") == "kafkaml-incremental-job-1"
