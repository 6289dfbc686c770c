"""The metrics service's tables: training curves, final metrics, model versions, windows, statistics.

Only the metrics service writes them, from the events trainers and inference replicas
publish; the orchestrator reads a stored version to serve it, the API reads everything.
A model's bytes live in one place, ``model_versions``: a bounded training's model is its
result's version 1, an incremental training adds versions 2, 3, ... (the download of a
result's model is its newest version).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Identity, Integer, LargeBinary, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables.base import ArtifactFormat, Base, StorableJSON, StorableText


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"

    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train: Mapped[dict[str, float | None]] = mapped_column(StorableJSON)
    val: Mapped[dict[str, float | None]] = mapped_column(StorableJSON)


class FinalMetrics(Base):
    __tablename__ = "final_metrics"

    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True)
    test_metrics: Mapped[dict[str, float | None]] = mapped_column(StorableJSON)
    confusion_matrix: Mapped[list[list[int]] | None] = mapped_column(StorableJSON, nullable=True)
    training_time: Mapped[float] = mapped_column(Float)
    samples: Mapped[dict[str, int]] = mapped_column(StorableJSON)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    # As the trainer's TrainingFinished event carries it.
    artifact_format: Mapped[ArtifactFormat] = mapped_column(String(10))


class ArtifactPart(Base):
    """Chunks waiting for their siblings, and for the announcement (``TrainingFinished``, or
    ``ModelVersionPublished``) that says what they are; deleted once their version is stored."""

    __tablename__ = "artifact_chunks"

    result_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The model version the chunks are (a bounded training's chunks: 1).
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # Chunks of an artifact that never completes are purged some time after they arrived.
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ModelVersionRow(Base):
    """One stored, servable version of a result's model: its bytes and what made it a version."""

    __tablename__ = "model_versions"

    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[ArtifactFormat] = mapped_column(String(10))
    # A window's prequential metrics (incremental), or the test metrics (bounded).
    metrics: Mapped[dict[str, float | None]] = mapped_column(StorableJSON)
    window: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class VersionAnnouncement(Base):
    """A ``ModelVersionPublished`` whose chunks are not all here yet (the two travel on
    different topics, so either may come first); deleted once the version is stored."""

    __tablename__ = "version_announcements"

    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[ArtifactFormat] = mapped_column(String(10))
    metrics: Mapped[dict[str, float | None]] = mapped_column(StorableJSON)
    window: Mapped[int | None] = mapped_column(Integer, nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WindowMetricRow(Base):
    """One window of an incremental training: the curve a continuous result draws."""

    __tablename__ = "window_metrics"

    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True)
    samples: Mapped[int] = mapped_column(BigInteger)
    prequential: Mapped[dict[str, float | None]] = mapped_column(StorableJSON)
    train: Mapped[dict[str, float | None]] = mapped_column(StorableJSON)
    val: Mapped[dict[str, float | None]] = mapped_column(StorableJSON)
    topic: Mapped[str] = mapped_column(StorableText)
    offsets: Mapped[list[dict[str, int]]] = mapped_column(StorableJSON)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class InferenceStat(Base):
    __tablename__ = "inference_stats"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    inference_id: Mapped[int] = mapped_column(ForeignKey("inferences.id", ondelete="CASCADE"), index=True)
    replica: Mapped[str] = mapped_column(StorableText)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    window_s: Mapped[float] = mapped_column(Float)
    messages: Mapped[int] = mapped_column(BigInteger)
    throughput: Mapped[float] = mapped_column(Float)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_p99_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    errors: Mapped[int] = mapped_column(BigInteger)
    lag: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    predicted: Mapped[dict[str, int]] = mapped_column(StorableJSON)
    # The event it came from: a redelivered statistic adds no row.
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)


class TrainingProgressRow(Base):
    """A trainer's latest phase before (and as) it trains: one row per result, the newest report."""

    __tablename__ = "training_progress"

    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True)
    phase: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(StorableText, default="")
    done: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
