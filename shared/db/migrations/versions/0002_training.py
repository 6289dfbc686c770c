"""training: deployments, jobs, results, metrics, artifacts, data sources

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB()
UUID = postgresql.UUID(as_uuid=True)


def now() -> sa.Column:  # type: ignore[type-arg]  # a server-default column of any type: no one type argument fits
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "configuration_id",
            sa.BigInteger(),
            sa.ForeignKey("configurations.id", ondelete="RESTRICT"),
            nullable=False,
            index=True,
        ),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("fit", JSONB, nullable=False),
        sa.Column("evaluate", JSONB, nullable=False),
        sa.Column("confusion_matrix", sa.Boolean(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("distributed", JSONB, nullable=True),
        now(),
        sa.Column("command_id", UUID, nullable=False, unique=True),
    )
    op.create_table(
        "training_jobs",
        sa.Column("id", UUID, primary_key=True),
        sa.Column(
            "deployment_id",
            sa.BigInteger(),
            sa.ForeignKey("deployments.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("spec", JSONB, nullable=False),
        now(),
    )
    op.create_table(
        "training_results",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "deployment_id",
            sa.BigInteger(),
            sa.ForeignKey("deployments.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "model_id", sa.BigInteger(), sa.ForeignKey("models.id", ondelete="RESTRICT"), nullable=False, index=True
        ),
        sa.Column("job_id", UUID, sa.ForeignKey("training_jobs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("datasource", JSONB, nullable=True),
        now(),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "status IN ('created', 'waiting_data', 'training', 'finished', 'failed', 'stopped')",
            name="training_results_status",
        ),
    )
    op.create_table(
        "epoch_metrics",
        sa.Column(
            "result_id", sa.BigInteger(), sa.ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("epoch", sa.Integer(), primary_key=True),
        sa.Column("train", JSONB, nullable=False),
        sa.Column("val", JSONB, nullable=False),
    )
    op.create_table(
        "final_metrics",
        sa.Column(
            "result_id", sa.BigInteger(), sa.ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("test_metrics", JSONB, nullable=False),
        sa.Column("confusion_matrix", JSONB, nullable=True),
        sa.Column("training_time", sa.Float(), nullable=False),
        sa.Column("samples", JSONB, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_format", sa.String(10), nullable=False),
    )
    op.create_table(
        "artifact_chunks",
        sa.Column("result_id", sa.BigInteger(), primary_key=True),
        sa.Column("index", sa.Integer(), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column(
            "result_id", sa.BigInteger(), sa.ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        now(),
    )
    op.create_table(
        "datasources",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("deployment_id", sa.BigInteger(), nullable=False, index=True),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("input_format", sa.String(10), nullable=False),
        sa.Column("input_config", JSONB, nullable=False),
        sa.Column("validation_rate", sa.Float(), nullable=False),
        sa.Column("test_rate", sa.Float(), nullable=False),
        sa.Column("total_msg", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("unsupervised_topic", sa.Text(), nullable=True),
        sa.Column("dataset_restrictions", JSONB, nullable=True),
        sa.Column("incremental", sa.Boolean(), nullable=False),
        sa.Column("control_topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        now(),
        sa.UniqueConstraint("control_topic", "partition", "offset", name="datasources_control_position"),
    )


def downgrade() -> None:
    for table in (
        "datasources",
        "artifacts",
        "artifact_chunks",
        "final_metrics",
        "epoch_metrics",
        "training_results",
        "training_jobs",
        "deployments",
    ):
        op.drop_table(table)
