"""The offset ranges a sink wrote, from its produce acknowledgements.

The control message names exact ranges. They come from the acknowledgements,
never from end offsets: the embedded broker answers wrong end offsets when
records arrive in batches, and acknowledgements are right on every broker.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.control import TopicRange


class AckRanges:
    """What the acknowledgements of one topic say: per partition, the first offset and last offset + 1.

    Only two integers per partition are kept, so memory stays flat however many
    records are sent. A range may include records of another producer that
    wrote to the same partitions meanwhile: the control message format has one
    contiguous range per partition (``count`` versus ``span`` tells).
    """

    def __init__(self) -> None:
        self._start: dict[int, int] = {}
        self._end: dict[int, int] = {}
        self.count = 0

    def record(self, partition: int, offset: int) -> None:
        if partition < 0 or offset < 0:
            raise ValueError(f"acknowledgement with a negative partition or offset: {partition}:{offset}")
        self.count += 1
        if partition not in self._start:
            self._start[partition] = offset
            self._end[partition] = offset + 1
            return
        self._start[partition] = min(self._start[partition], offset)
        self._end[partition] = max(self._end[partition], offset + 1)

    def ranges(self, topic: str) -> list[TopicRange]:
        return [TopicRange(topic, p, self._start[p], self._end[p]) for p in sorted(self._start)]

    @property
    def span(self) -> int:
        """Records inside the ranges (equals ``count`` unless someone else wrote to them)."""
        return sum(self._end[p] - self._start[p] for p in self._start)


def ranges_text(ranges: Iterable[TopicRange]) -> str:
    """``topic:partition:start:end`` joined by commas, the control message's ``topic`` field."""
    return ",".join(str(r) for r in ranges)
