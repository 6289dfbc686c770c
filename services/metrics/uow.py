"""The metrics service's unit of work: one transaction per batch of messages.

It is the catalog's ``SqlUnitOfWork`` (so ``processed`` and ``outcomes`` are the
shared bookkeeping) plus the metrics and artifact repositories, and a tally of
what the batch stored, for the one log line per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Self

from shared.db.repositories import ArtifactRepository, MetricsRepository, OutcomeRepository, ProcessedRepository
from shared.db.uow import SqlUnitOfWork


@dataclass
class Tally:
    """What one batch stored (a retried batch starts a fresh tally with its fresh unit of work)."""

    epochs: int = 0
    finals: int = 0
    chunks: int = 0
    stats: int = 0
    windows: int = 0
    versions: list[tuple[int, int]] = field(default_factory=list)  # (result id, version) stored
    artifacts: list[tuple[int, int]] = field(default_factory=list)  # (result id, size in bytes)
    corrupt: list[int] = field(default_factory=list)  # results whose reassembled artifact failed its checksum

    def summary(self, *, skipped: int = 0) -> str:
        """``stored 10 epochs, 1 final metrics, 3 artifact chunks (1 artifact complete: result 7, 412 KiB)``."""
        line = f"stored {self.epochs} epochs, {self.finals} final metrics, {self.chunks} artifact chunks"
        if self.stats:
            line += f", {self.stats} inference statistics"
        if self.windows:
            line += f", {self.windows} windows"
        if self.versions:
            line += ", versions " + ", ".join(f"{v} of result {r}" for r, v in self.versions)
        if self.artifacts:
            done = "; ".join(f"result {r}, {human_size(size)}" for r, size in self.artifacts)
            plural = "artifact" if len(self.artifacts) == 1 else "artifacts"
            line += f" ({len(self.artifacts)} {plural} complete: {done})"
        if self.corrupt:
            line += f"; checksum mismatch, artifact dropped: result {', '.join(map(str, self.corrupt))}"
        if skipped:
            line += f"; {skipped} already processed, skipped"
        return line


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


class MetricsUnitOfWork(Protocol):
    """What the metrics handlers and ``handle_batch_once`` need (fakes implement it in tests)."""

    metrics: MetricsRepository
    artifacts: ArtifactRepository
    processed: ProcessedRepository
    outcomes: OutcomeRepository
    tally: Tally

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


class SqlMetricsUnitOfWork(SqlUnitOfWork):
    """Leaving the block without ``commit()`` rolls back (as ``SqlUnitOfWork``)."""

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.metrics = MetricsRepository(self.session)
        self.artifacts = ArtifactRepository(self.session)
        self.tally = Tally()
        return self
