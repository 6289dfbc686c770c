"""The catalog and bookkeeping tables (Alembic migrations create them)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    framework: Mapped[str] = mapped_column(String(20))
    code: Mapped[str] = mapped_column(Text)
    imports: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    upper_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("models.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The command that created the row: a redelivered command finds it and adds nothing.
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)


class Configuration(Base):
    __tablename__ = "configurations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)


class ConfigurationModel(Base):
    __tablename__ = "configuration_models"

    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"), primary_key=True, index=True)


class ProcessedMessage(Base):
    """One row per message a consumer handled, with what it published in answer.

    A redelivered message is recognised here and its answer published again
    (the first publish may have been lost with the process), nothing else.
    """

    __tablename__ = "processed_messages"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    published: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CommandOutcome(Base):
    """How each command ended, for clients that got 202 and poll ``/commands/{id}``."""

    __tablename__ = "command_outcomes"

    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    outcome_type: Mapped[str] = mapped_column(String(100))
    event: Mapped[dict[str, Any]] = mapped_column(JSONB)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- training (orchestrator) -------------------------------------------------


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id", ondelete="RESTRICT"), index=True)
    batch_size: Mapped[int] = mapped_column(Integer)
    fit: Mapped[dict[str, Any]] = mapped_column(JSONB)
    evaluate: Mapped[dict[str, Any]] = mapped_column(JSONB)
    confusion_matrix: Mapped[bool] = mapped_column(Boolean)
    gpus: Mapped[int] = mapped_column(Integer)
    distributed: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)


class TrainingJob(Base):
    """What one trainer process runs: a model, or a whole distributed chain."""

    __tablename__ = "training_jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TrainingResult(Base):
    __tablename__ = "training_results"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"), index=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="created")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    datasource: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- metrics and artifacts (metrics service) -----------------------------------


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"

    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train: Mapped[dict[str, float | None]] = mapped_column(JSONB)
    val: Mapped[dict[str, float | None]] = mapped_column(JSONB)


class FinalMetrics(Base):
    __tablename__ = "final_metrics"

    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True)
    test_metrics: Mapped[dict[str, float | None]] = mapped_column(JSONB)
    confusion_matrix: Mapped[list[list[int]] | None] = mapped_column(JSONB, nullable=True)
    training_time: Mapped[float] = mapped_column(Float)
    samples: Mapped[dict[str, int]] = mapped_column(JSONB)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_format: Mapped[str] = mapped_column(String(10))


class ArtifactPart(Base):
    """Chunks waiting for their siblings; deleted once the artifact is whole."""

    __tablename__ = "artifact_chunks"

    result_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Artifact(Base):
    __tablename__ = "artifacts"

    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- data sources (control logger) ----------------------------------------------


class Datasource(Base):
    __tablename__ = "datasources"
    __table_args__ = (UniqueConstraint("control_topic", "partition", "offset", name="datasources_control_position"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(BigInteger, index=True)
    topic: Mapped[str] = mapped_column(Text)
    input_format: Mapped[str] = mapped_column(String(10))
    input_config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    validation_rate: Mapped[float] = mapped_column(Float)
    test_rate: Mapped[float] = mapped_column(Float)
    total_msg: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    unsupervised_topic: Mapped[str | None] = mapped_column(Text, nullable=True)
    dataset_restrictions: Mapped[Any] = mapped_column(JSONB, nullable=True)
    incremental: Mapped[bool] = mapped_column(Boolean, default=False)
    control_topic: Mapped[str] = mapped_column(Text)
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- inference (orchestrator; statistics: metrics service) -------------------------


class Inference(Base):
    __tablename__ = "inferences"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="RESTRICT"), index=True)
    model_id: Mapped[int] = mapped_column(BigInteger)
    replicas: Mapped[int] = mapped_column(Integer)
    input_topic: Mapped[str] = mapped_column(Text)
    output_topic: Mapped[str] = mapped_column(Text)
    input_format: Mapped[str] = mapped_column(String(10))
    input_config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    upper_topic: Mapped[str | None] = mapped_column(Text, nullable=True)
    # "limit" is an SQL keyword.
    confidence_limit: Mapped[float | None] = mapped_column(Float, nullable=True)
    gpus: Mapped[int] = mapped_column(Integer)
    visualization: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)


class InferenceStat(Base):
    __tablename__ = "inference_stats"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    inference_id: Mapped[int] = mapped_column(ForeignKey("inferences.id", ondelete="CASCADE"), index=True)
    replica: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    window_s: Mapped[float] = mapped_column(Float)
    messages: Mapped[int] = mapped_column(BigInteger)
    throughput: Mapped[float] = mapped_column(Float)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_p99_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    errors: Mapped[int] = mapped_column(BigInteger)
    lag: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    predicted: Mapped[dict[str, int]] = mapped_column(JSONB)
    # The event it came from: a redelivered statistic adds no row.
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
