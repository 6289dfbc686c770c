"""What the Keras trainer hands the model: integer data as it is where the model converts it, and
evaluation batches sized by the samples, not by the training batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.trainer.data.datasets import InMemoryData
from services.trainer.keras_training import EVAL_BATCH_MAX, _Run, evaluation_batch
from shared.codecs import decoder_for
from tests.unit.fakes import job_spec


def data(x: np.ndarray[Any, Any]) -> InMemoryData:
    y = np.zeros((len(x), 1), dtype=np.uint8)
    return InMemoryData(decoder_for("RAW", {}), x, y, validation_rate=0.1, test_rate=0.1, bad=0)


def test_the_evaluation_batch_grows_with_small_samples_and_shrinks_with_large_ones() -> None:
    spec = job_spec()  # batch_size 32
    assert evaluation_batch(spec, (28, 28)) == EVAL_BATCH_MAX
    assert evaluation_batch(spec, (224, 224, 3)) == 55  # 32 MiB of float32 inputs
    assert evaluation_batch(spec, (2048, 2048, 3)) == 32  # never below the training batch
    assert evaluation_batch(spec, (28, 28), fixed=16) == 16  # a model built for one batch size


def test_integer_data_reaches_a_model_with_a_float_input_as_it_is() -> None:
    import keras

    pixels = np.arange(100 * 8 * 8, dtype=np.uint8).reshape(100, 8, 8)
    declared = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(2)])
    run = _Run(job_spec(), data(pixels), declared)
    x, _ = run.arrays("train")
    assert x.dtype == np.uint8
    # Keras converts each batch to the input's dtype: the same predictions as float32 inputs.
    assert np.array_equal(declared.predict_on_batch(x[:4]), declared.predict_on_batch(x[:4].astype("float32")))

    class Undeclared(keras.Model):  # a subclassed model declares no input: converted here
        def call(self, inputs: Any) -> Any:
            return inputs

    x, _ = _Run(job_spec(), data(pixels), Undeclared()).arrays("train")
    assert x.dtype == np.float32
    floats = pixels.astype(np.float64)
    x, _ = _Run(job_spec(), data(floats), declared).arrays("train")
    assert x.dtype == np.float32  # other floats still become the input's dtype


@pytest.mark.parametrize("interleaved", [False, True])
def test_the_split_follows_the_announced_order_however_the_records_came(interleaved: bool) -> None:
    x = np.arange(50, dtype=np.uint8).reshape(50, 1)
    expected = data(x)
    if not interleaved:
        assert np.array_equal(expected.arrays("test")[0], data(x).arrays("test")[0])
        return
    shuffled = np.random.default_rng(3).permutation(50)  # position i of the read holds sample shuffled[i]
    y = np.zeros((50, 1), dtype=np.uint8)
    read = InMemoryData(
        decoder_for("RAW", {}), x[shuffled], y, validation_rate=0.1, test_rate=0.1, bad=0,
        order=np.argsort(shuffled, kind="stable"),
    )  # fmt: skip
    for part in ("train", "validation", "test"):
        assert np.array_equal(read.arrays(part)[0], expected.arrays(part)[0]), part
