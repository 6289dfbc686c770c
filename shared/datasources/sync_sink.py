"""The blocking sink: upstream's method names over the asyncio core, on a loop of its own.

The core runs on its own event loop in a background thread, so a blocking
sink also works where a loop already runs (Jupyter).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from shared.control import ControlMessage, TopicRange
from shared.datasources.async_sink import (
    AsyncKafkaMLSink,
    Stream,
)
from shared.datasources.errors import SinkError

T = TypeVar("T")


class _LoopThread:
    """An event loop of its own in a daemon thread, so blocking callers work inside a running loop too."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._loop.is_closed()

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._loop.call_soon_threadsafe(callback)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coroutine.close()
            raise SinkError("this sink is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a blocking sink method was called from the sink's own loop thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


A = TypeVar("A", bound=AsyncKafkaMLSink)


class KafkaMLSink(Generic[A]):
    """Blocking sink with upstream's methods; wraps an ``AsyncKafkaMLSink`` running in its own thread.

    It connects in the constructor, as upstream's does, so a wrong address fails early.
    ``send`` encodes in the caller's thread (a bad sample raises at once) and hands the
    record to the loop thread without waiting for it: a round trip per sample would cost
    far more than the send itself. At most ``max_in_flight`` records wait in that hand-over.
    """

    def __init__(self, sink: A) -> None:
        self._sink = sink
        self._queue: deque[tuple[Stream, bytes, bytes | None]] = deque()
        self._lock = threading.Lock()
        self._room = threading.Semaphore(sink.max_in_flight)
        self._pumping = False
        self._pump_task: asyncio.Task[None] | None = None
        self._pump_error: BaseException | None = None
        self._thread = _LoopThread(f"kafkaml-sink-{sink.topic}")
        try:
            self._thread.run(sink.start())
        except BaseException:
            self._thread.stop()
            raise

    @property
    def sink(self) -> A:
        """The asyncio sink underneath (read its attributes; do not await it from another loop)."""
        return self._sink

    @property
    def topic(self) -> str:
        return self._sink.topic

    @property
    def deployment_id(self) -> int:
        return self._sink.deployment_id

    @property
    def control_topic(self) -> str:
        return self._sink.control_topic

    @property
    def input_config(self) -> dict[str, Any]:
        return self._sink.input_config

    @property
    def total_messages(self) -> int:
        return self._sink.total_messages

    @property
    def topic_partitions(self) -> list[int]:
        return self._sink.topic_partitions

    @property
    def control_message(self) -> ControlMessage | None:
        return self._sink.control_message

    @property
    def elapsed_s(self) -> float:
        return self._sink.elapsed_s

    def ranges(self) -> list[TopicRange]:
        return self._sink.ranges()

    # --- sending: encode here, hand over to the loop thread ---

    def send(self, data: Any, label: Any = None) -> None:
        """Sends one sample (``label`` None: no key). Returns once enqueued; a failed delivery raises
        on a later call, at the latest on ``flush()``/``close()``."""
        value, key = self._sink.encode(data, label)
        self._put(self._sink._main, value, key)

    def send_value(self, data: Any) -> None:
        self._put(self._sink._main, self._sink.encode_value(data), None)

    def unsupervised_send(self, data: Any) -> None:
        stream = self._sink._unsupervised
        if stream is None:
            raise SinkError("unsupervised_send needs the sink's unsupervised_topic")
        self._put(stream, self._sink.encode_value(data), None)

    def send_many(self, data: Iterable[Any], labels: Iterable[Any] | None = None) -> int:
        """Sends every sample of ``data`` (with the matching label); returns how many."""
        count = 0
        if labels is None:
            for sample in data:
                self.send(sample)
                count += 1
            return count
        for sample, label in zip(data, labels, strict=True):
            self.send(sample, label)
            count += 1
        return count

    def _put(self, stream: Stream, value: bytes, key: bytes | None) -> None:
        if self._thread.stopped:
            raise SinkError("this sink is closed")
        self._raise_if_failed()
        self._room.acquire()
        with self._lock:
            self._queue.append((stream, value, key))
            if self._pumping:
                return
            self._pumping = True
        self._thread.call_soon(self._start_pump)

    def _raise_if_failed(self) -> None:
        if self._pump_error is not None:
            raise self._pump_error
        # Read across threads on purpose: a stale answer only delays the error to the next call.
        self._sink._raise_if_failed()

    def _start_pump(self) -> None:
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        """Moves handed-over records into the producer; never raises (the caller sees the error)."""
        while True:
            with self._lock:
                if not self._queue:
                    self._pumping = False
                    return
                stream, value, key = self._queue.popleft()
            try:
                if self._pump_error is None:
                    await self._sink._enqueue(stream, value, key)
            except BaseException as exc:
                # Keep draining so blocked callers wake up; the records left are not sent.
                self._pump_error = exc
            finally:
                self._room.release()

    async def _drain(self) -> None:
        while True:
            task = self._pump_task
            if task is not None and not task.done():
                await task
                continue
            with self._lock:
                waiting = bool(self._queue) and not self._pumping
            if waiting:  # pragma: no cover - a pump is always scheduled while records wait
                await self._pump()
                continue
            if self._pumping:
                await asyncio.sleep(0)  # the pump is scheduled but has not started yet
                continue
            break
        if self._pump_error is not None:
            raise self._pump_error

    async def _flush(self) -> None:
        await self._drain()
        await self._sink.flush()

    async def _announce(self, online: bool) -> ControlMessage:
        await self._drain()
        if online:
            return await self._sink.send_online_control_msg()
        return await self._sink.send_control_msg()

    async def _close(self) -> ControlMessage | None:
        try:
            await self._drain()
        except BaseException:
            await self._sink.abort()
            raise
        return await self._sink.close()

    async def _online_close(self) -> None:
        try:
            await self._drain()
        finally:
            await self._sink.online_close()

    async def _abort(self) -> None:
        with contextlib.suppress(BaseException):
            await self._drain()
        await self._sink.abort()

    def flush(self) -> None:
        """Waits until every record sent so far is acknowledged; raises ``DeliveryError`` if any failed."""
        self._thread.run(self._flush())

    def send_control_msg(self) -> ControlMessage:
        """Flushes and sends the control message now (``close()`` then sends none unless more was sent)."""
        return self._thread.run(self._announce(online=False))

    def send_online_control_msg(self) -> ControlMessage:
        """Announces the topic as an online (unbounded) data source."""
        return self._thread.run(self._announce(online=True))

    def close(self) -> ControlMessage | None:
        """Flushes, sends the control message, disconnects; returns the message (None if nothing was sent).

        A delivery failure raises ``DeliveryError`` and announces nothing.
        """
        if self._thread.stopped:
            return self._sink.control_message
        try:
            return self._thread.run(self._close())
        finally:
            self._thread.stop()

    def online_close(self) -> None:
        """Flushes and disconnects without a control message."""
        if self._thread.stopped:
            return
        try:
            self._thread.run(self._online_close())
        finally:
            self._thread.stop()

    def abort(self) -> None:
        """Disconnects without announcing anything."""
        if self._thread.stopped:
            return
        try:
            self._thread.run(self._abort())
        finally:
            self._thread.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
