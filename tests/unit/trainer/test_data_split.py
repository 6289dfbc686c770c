"""The trainer's train/validation/test split: seeded shuffle, exact counts, classes kept."""

from __future__ import annotations

import numpy as np
import pytest

from services.trainer.data import InMemoryData, split_counts, split_indices
from shared.codecs import decoder_for


@pytest.mark.parametrize(
    ("n", "val", "test", "expected"),
    [
        (1797, 0.1, 0.1, (1437, 180, 180)),
        (569, 0.1, 0.2, (398, 57, 114)),
        (10, 0.0, 0.0, (10, 0, 0)),
        (3, 0.3, 0.3, (1, 1, 1)),
    ],
)
def test_counts(n: int, val: float, test: float, expected: tuple[int, int, int]) -> None:
    assert split_counts(n, val, test) == expected
    train_idx, val_idx, test_idx = split_indices(n, val, test)
    assert (len(train_idx), len(val_idx), len(test_idx)) == expected
    # A partition of the samples: each index in exactly one part.
    assert sorted(np.concatenate([train_idx, val_idx, test_idx]).tolist()) == list(range(n))


def test_seeded_and_not_positional() -> None:
    first = split_indices(1000, 0.1, 0.2)
    again = split_indices(1000, 0.1, 0.2)
    other = split_indices(1000, 0.1, 0.2, seed=7)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])
    # Upstream's positional split would make the test set the last 200 samples.
    assert set(first[2].tolist()) != set(range(800, 1000))


def test_classes_stay_balanced_when_the_data_arrives_grouped_by_label() -> None:
    # Labels as keys on a 2-partition topic: the data is read class by class.
    labels = np.repeat(np.arange(10), 180).astype(np.uint8)
    x = np.zeros((len(labels), 8, 8), dtype=np.uint8)
    decoder = decoder_for("RAW", {"data_type": "uint8", "data_reshape": "8 8"})
    data = InMemoryData(decoder, x, labels, validation_rate=0.1, test_rate=0.1, bad=3)
    assert (data.counts.train, data.counts.validation, data.counts.test, data.counts.bad) == (1440, 180, 180, 3)
    for part in ("train", "validation", "test"):
        arrays = data.arrays(part)
        assert arrays is not None
        share = np.bincount(arrays[1], minlength=10) / len(arrays[1])
        assert share.min() > 0.05 and share.max() < 0.15, (part, share)
    batches = list(data.batches("test", 64))
    assert [len(b[0]) for b in batches] == [64, 64, 52]
