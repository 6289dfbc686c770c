"""The orchestrator's catalog: models, configurations, deployments, training jobs and results, inferences.

Only the orchestrator writes these tables (it handles the commands that change them);
the API and the other services only read them. A row a command created carries that
command's id, so a redelivered command finds it and adds nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Identity, Integer, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables.base import Base, InputFormat, StorableJSON, StorableString, StorableText
from shared.events.catalog import Framework
from shared.events.inference import InferenceStatus
from shared.events.training import ResultStatus


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(StorableString(200))
    framework: Mapped[Framework] = mapped_column(String(20))  # CHECK models_framework
    code: Mapped[str] = mapped_column(StorableText)
    imports: Mapped[str] = mapped_column(StorableText, default="")
    description: Mapped[str] = mapped_column(StorableText, default="")
    upper_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("models.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    summary: Mapped[dict[str, Any]] = mapped_column(StorableJSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)


class Configuration(Base):
    __tablename__ = "configurations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(StorableString(200))
    description: Mapped[str] = mapped_column(StorableText, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)


class ConfigurationModel(Base):
    __tablename__ = "configuration_models"

    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"), primary_key=True, index=True)


# --- training -------------------------------------------------------------------


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id", ondelete="RESTRICT"), index=True)
    batch_size: Mapped[int] = mapped_column(Integer)
    fit: Mapped[dict[str, Any]] = mapped_column(StorableJSON)
    evaluate: Mapped[dict[str, Any]] = mapped_column(StorableJSON)
    confusion_matrix: Mapped[bool] = mapped_column(Boolean)
    gpus: Mapped[int] = mapped_column(Integer)
    distributed: Mapped[dict[str, Any] | None] = mapped_column(StorableJSON, nullable=True)
    # The window and version settings of an incremental (continuous) deployment; None: bounded.
    incremental: Mapped[dict[str, Any] | None] = mapped_column(StorableJSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)


class TrainingJob(Base):
    """What one trainer process runs: a model, or a whole distributed chain."""

    __tablename__ = "training_jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(StorableJSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TrainingResult(Base):
    __tablename__ = "training_results"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"), index=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[ResultStatus] = mapped_column(String(20), default="created")  # CHECK training_results_status
    error: Mapped[str | None] = mapped_column(StorableText, nullable=True)
    datasource: Mapped[dict[str, Any] | None] = mapped_column(StorableJSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- inference --------------------------------------------------------------------


class Inference(Base):
    __tablename__ = "inferences"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("training_results.id", ondelete="RESTRICT"), index=True)
    model_id: Mapped[int] = mapped_column(BigInteger)
    replicas: Mapped[int] = mapped_column(Integer)
    input_topic: Mapped[str] = mapped_column(StorableText)
    output_topic: Mapped[str] = mapped_column(StorableText)
    # Checked against the codecs when the inference is deployed.
    input_format: Mapped[InputFormat] = mapped_column(String(10))
    input_config: Mapped[dict[str, Any]] = mapped_column(StorableJSON)
    upper_topic: Mapped[str | None] = mapped_column(StorableText, nullable=True)
    # "limit" is an SQL keyword.
    confidence_limit: Mapped[float | None] = mapped_column(Float, nullable=True)
    gpus: Mapped[int] = mapped_column(Integer)
    visualization: Mapped[dict[str, Any] | None] = mapped_column(StorableJSON, nullable=True)
    status: Mapped[InferenceStatus] = mapped_column(String(20))  # CHECK inferences_status
    error: Mapped[str | None] = mapped_column(StorableText, nullable=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(StorableJSON)
    # The version policy: follow_latest (every new version of the result), else the pinned
    # model_version. serving_version: what the replicas last reported serving.
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    follow_latest: Mapped[bool] = mapped_column(Boolean, default=False)
    serving_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
