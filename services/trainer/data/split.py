"""The split of a data set into train, validation and test: seeded, the same every time."""

from __future__ import annotations

from typing import Any, Final

import numpy as np

# One seed for every split: the same data set gives the same test set to every
# deployment that trains on it, so their test metrics compare.
SPLIT_SEED: Final = 42


def split_counts(n: int, validation_rate: float, test_rate: float) -> tuple[int, int, int]:
    """(train, validation, test) sizes: test = round(n * test_rate), validation = round(n * validation_rate)."""
    test = min(n, round(n * test_rate))
    validation = min(n - test, round(n * validation_rate))
    return n - test - validation, validation, test


def split_indices(
    n: int, validation_rate: float, test_rate: float, seed: int = SPLIT_SEED
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]]
]:
    """Indices of the train, validation and test samples: a seeded shuffle, then cut.

    Upstream Kafka-ML splits by position: the last samples read become the
    test set. A data source that keys its records by label on a
    multi-partition topic puts each class in one partition, so the samples
    read last are a few classes only, and the test (and validation) sets are
    skewed. Shuffling first with a fixed seed keeps the class proportions in
    every part (up to sampling noise) and gives the same split every time the
    same data set is used.
    """
    _, validation, test = split_counts(n, validation_rate, test_rate)
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return order[test + validation :], order[test : test + validation], order[:test]
