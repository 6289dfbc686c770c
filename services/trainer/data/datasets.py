"""The data a training uses: decoded and held in memory, or re-read from Kafka on every pass.

The decoded data set is kept in memory across epochs (upstream Kafka-ML
re-reads the topic every epoch); one beyond the memory budget is streamed
from the announced ranges once per epoch instead (:class:`StreamingData`).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Final, Literal, TypeVar

import numpy as np

from services.trainer.data.control import FoundControl
from services.trainer.data.ranges import iter_ranges
from services.trainer.data.split import SPLIT_SEED, split_indices
from shared.codecs import Decoder, decoder_for
from shared.events.training import SampleCounts
from shared.settings import Settings

Part = Literal["train", "validation", "test"]
PARTS: Final[tuple[Part, ...]] = ("train", "validation", "test")

T = TypeVar("T")


class TrainingData(ABC):
    """The decoded, split data set, whether held in memory or re-read from Kafka."""

    decoder: Decoder
    counts: SampleCounts
    sample_shape: tuple[int, ...]
    x_dtype: np.dtype[Any]
    y_dtype: np.dtype[Any]
    label_shape: tuple[int, ...]

    def size(self, part: Part) -> int:
        return {"train": self.counts.train, "validation": self.counts.validation, "test": self.counts.test}[part]

    @abstractmethod
    def arrays(self, part: Part) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
        """The part's (x, y) in memory; None when the data set is streamed."""

    @abstractmethod
    def batches(self, part: Part, batch_size: int) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        """The part in batches. Streamed data re-reads Kafka: call it from a training thread, not the loop."""


class InMemoryData(TrainingData):
    def __init__(
        self,
        decoder: Decoder,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        *,
        validation_rate: float,
        test_rate: float,
        bad: int,
        seed: int = SPLIT_SEED,
        order: np.ndarray[Any, Any] | None = None,
    ) -> None:
        """``order``: where each sample of the announced order is in ``x`` and ``y`` (records
        read interleaved from partitions); applied with the split, one copy of the data."""
        self.decoder = decoder
        train, validation, test = split_indices(len(x), validation_rate, test_rate, seed)
        if order is not None:
            train, validation, test = order[train], order[validation], order[test]
        self._parts: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {
            "train": (x[train], y[train]),
            "validation": (x[validation], y[validation]),
            "test": (x[test], y[test]),
        }
        self.counts = SampleCounts(train=len(train), validation=len(validation), test=len(test), bad=bad)
        self.sample_shape = tuple(x.shape[1:])
        self.x_dtype = x.dtype
        self.y_dtype = y.dtype
        self.label_shape = tuple(y.shape[1:])

    def arrays(self, part: Part) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        return self._parts[part]

    def batches(self, part: Part, batch_size: int) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        x, y = self._parts[part]
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]


class StreamingData(TrainingData):
    """Re-reads the announced ranges from Kafka on every pass (data sets beyond the memory budget).

    The split is decided per announced position (a seeded shuffle of all
    positions), so every pass puts each record in the same part without
    keeping any data. The async reading runs on the job's event loop; the
    training thread pulls batches from it.
    """

    def __init__(
        self,
        settings: Settings,
        found: FoundControl,
        *,
        assignment: np.ndarray[Any, np.dtype[np.int8]],
        counts: SampleCounts,
        sample_shape: tuple[int, ...],
        x_dtype: np.dtype[Any],
        y_dtype: np.dtype[Any],
        label_shape: tuple[int, ...],
        decoder: Decoder,
        missing_timeout_s: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.settings = settings
        self.found = found
        self.assignment = assignment
        self.counts = counts
        self.sample_shape = sample_shape
        self.x_dtype = x_dtype
        self.y_dtype = y_dtype
        self.label_shape = label_shape
        self.decoder = decoder
        self.missing_timeout_s = missing_timeout_s
        self._loop = loop

    def arrays(self, part: Part) -> None:
        return None

    async def _stream(
        self, part: Part, batch_size: int
    ) -> AsyncIterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        wanted = PARTS.index(part)
        decoder = decoder_for(self.found.message.input_format, self.found.message.input_config)
        xs: list[np.ndarray[Any, Any]] = []
        ys: list[np.ndarray[Any, Any]] = []
        held = 0
        reader = iter_ranges(self.settings, self.found.message.ranges(), missing_timeout_s=self.missing_timeout_s)
        async with contextlib.aclosing(reader):
            async for batch in reader:
                decoded = decoder.decode(batch.values, batch.keys)
                if decoded.y is None:  # keys were given: never None
                    continue
                positions = np.asarray([batch.position(i) for i in decoded.good_indices], dtype=np.int64)
                mask = self.assignment[positions] == wanted if len(positions) else np.zeros(0, dtype=bool)
                if not mask.any():
                    continue
                xs.append(decoded.x[mask])
                ys.append(decoded.y[mask])
                held += int(mask.sum())
                while held >= batch_size:
                    x, y = np.concatenate(xs), np.concatenate(ys)
                    yield x[:batch_size], y[:batch_size]
                    xs, ys = [x[batch_size:]], [y[batch_size:]]
                    held -= batch_size
        if held:
            yield np.concatenate(xs), np.concatenate(ys)

    def batches(self, part: Part, batch_size: int) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        return _pull(self._loop, lambda: self._stream(part, batch_size))


def _pull(loop: asyncio.AbstractEventLoop, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """A blocking iterator over an async iterator that runs on ``loop`` (from another thread)."""
    if _on_loop_thread(loop):
        raise RuntimeError("streamed data must be read from a training thread, not the event loop")
    iterator = make()

    async def step() -> T:
        return await iterator.__anext__()

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    try:
        while True:
            try:
                item = run(step())
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(aclose(), loop)
            # Never block the loop's own thread (a generator may be collected there).
            if not _on_loop_thread(loop):
                future.result(timeout=30)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
