"""inference: inferences and their statistics

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB()
UUID = postgresql.UUID(as_uuid=True)


def upgrade() -> None:
    op.create_table(
        "inferences",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "result_id",
            sa.BigInteger(),
            sa.ForeignKey("training_results.id", ondelete="RESTRICT"),
            nullable=False,
            index=True,
        ),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("input_topic", sa.Text(), nullable=False),
        sa.Column("output_topic", sa.Text(), nullable=False),
        sa.Column("input_format", sa.String(10), nullable=False),
        sa.Column("input_config", JSONB, nullable=False),
        sa.Column("upper_topic", sa.Text(), nullable=True),
        sa.Column("confidence_limit", sa.Float(), nullable=True),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("visualization", JSONB, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", UUID, nullable=False, unique=True),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("command_id", UUID, nullable=False, unique=True),
        sa.CheckConstraint("status IN ('starting', 'running', 'stopped', 'failed')", name="inferences_status"),
    )
    op.create_table(
        "inference_stats",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "inference_id",
            sa.BigInteger(),
            sa.ForeignKey("inferences.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("replica", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("throughput", sa.Float(), nullable=False),
        sa.Column("latency_p50_ms", sa.Float(), nullable=True),
        sa.Column("latency_p95_ms", sa.Float(), nullable=True),
        sa.Column("latency_p99_ms", sa.Float(), nullable=True),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("lag", sa.BigInteger(), nullable=True),
        sa.Column("predicted", JSONB, nullable=False),
        sa.Column("event_id", UUID, nullable=False, unique=True),
    )


def downgrade() -> None:
    op.drop_table("inference_stats")
    op.drop_table("inferences")
