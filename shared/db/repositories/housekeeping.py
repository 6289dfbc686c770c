"""Bounded growth: what is kept at full detail only for a while, and what is dropped.

A stack left running must not grow without end: the ids of handled messages are
needed only while a redelivery can still come; inference statistics (a row per
replica every few seconds) are folded into hourly rows once they are old; the
chunks of an artifact that never completed (and a version announced whose chunks never came) are dropped.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Delete, delete, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import ArtifactPart, InferenceStat, ProcessedMessage, VersionAnnouncement

# Statistics windows at most this long are replicas' own reports (seconds); folded rows are longer.
RAW_WINDOW_MAX_S = 60.0


@dataclass(frozen=True)
class Folded:
    """What one downsampling round did."""

    read: int
    written: int


class Housekeeping:
    """Deletes and folds; flushes, never commits (the caller owns the transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def forget_processed(self, consumer: str, older_than: timedelta) -> int:
        """Drops ``consumer``'s handled-message ids older than ``older_than``: a redelivery
        comes within minutes, not days."""
        cutoff = datetime.now(UTC) - older_than
        statement = delete(ProcessedMessage).where(
            ProcessedMessage.consumer == consumer, ProcessedMessage.processed_at < cutoff
        )
        return await self._deleted(statement)

    async def purge_orphan_chunks(self, older_than: timedelta) -> int:
        """Drops chunks that waited longer than ``older_than`` for siblings (or the announcement
        of their version) that never came, and version announcements that waited for their chunks
        as long; returns how many chunks."""
        cutoff = datetime.now(UTC) - older_than
        await self._deleted(delete(VersionAnnouncement).where(VersionAnnouncement.received_at < cutoff))
        return await self._deleted(delete(ArtifactPart).where(ArtifactPart.received_at < cutoff))

    async def _deleted(self, statement: Delete) -> int:
        result = cast("CursorResult[Any]", await self.session.execute(statement))  # a DELETE has a row count
        return int(result.rowcount or 0)

    async def fold_statistics(self, older_than: timedelta, *, limit: int = 20_000) -> Folded:
        """Folds replicas' statistics older than ``older_than`` into one row per inference,
        replica and hour: messages and errors add up, throughput is recomputed, p50 is the
        message-weighted mean, p95 and p99 the worst, lag the last, class counts add up."""
        cutoff = datetime.now(UTC) - older_than
        rows = (
            await self.session.scalars(
                select(InferenceStat)
                .where(InferenceStat.recorded_at < cutoff, InferenceStat.window_s <= RAW_WINDOW_MAX_S)
                .order_by(InferenceStat.recorded_at)
                .limit(limit)
            )
        ).all()
        groups: dict[tuple[int, str, datetime], list[InferenceStat]] = {}
        for row in rows:
            hour = row.recorded_at.replace(minute=0, second=0, microsecond=0)
            groups.setdefault((row.inference_id, row.replica, hour), []).append(row)
        folded = [fold(members) for members in groups.values()]
        if rows:
            await self.session.execute(delete(InferenceStat).where(InferenceStat.id.in_([r.id for r in rows])))
            self.session.add_all(folded)
            await self.session.flush()
        return Folded(read=len(rows), written=len(folded))


def fold(rows: Sequence[InferenceStat]) -> InferenceStat:
    """One row standing for ``rows`` (one inference's replica, one hour)."""
    messages = sum(r.messages for r in rows)
    window_s = sum(r.window_s for r in rows)
    timed = [r for r in rows if r.latency_p50_ms is not None and r.messages]
    weight = sum(r.messages for r in timed)
    predicted: Counter[str] = Counter()
    for row in rows:
        predicted.update(row.predicted or {})
    return InferenceStat(
        inference_id=rows[0].inference_id,
        replica=rows[0].replica,
        recorded_at=max(r.recorded_at for r in rows),
        # At least a minute: a folded row is never folded again.
        window_s=max(window_s, RAW_WINDOW_MAX_S + 1),
        messages=messages,
        throughput=messages / window_s if window_s else 0.0,
        latency_p50_ms=sum((r.latency_p50_ms or 0.0) * r.messages for r in timed) / weight if weight else None,
        latency_p95_ms=max((r.latency_p95_ms for r in rows if r.latency_p95_ms is not None), default=None),
        latency_p99_ms=max((r.latency_p99_ms for r in rows if r.latency_p99_ms is not None), default=None),
        errors=sum(r.errors for r in rows),
        lag=max(rows, key=lambda r: r.recorded_at).lag,
        predicted=dict(predicted),
        event_id=uuid.uuid4(),
    )
