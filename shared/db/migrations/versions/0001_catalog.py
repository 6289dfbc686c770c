"""catalog: models, configurations; bookkeeping: processed messages, command outcomes

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("framework", sa.String(20), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("imports", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("upper_model_id", sa.BigInteger(), sa.ForeignKey("models.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("summary", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("command_id", postgresql.UUID(as_uuid=True), nullable=False, unique=True),
        sa.CheckConstraint("framework IN ('tensorflow', 'pytorch')", name="models_framework"),
    )
    op.create_index("ix_models_upper_model_id", "models", ["upper_model_id"])
    op.create_table(
        "configurations",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("command_id", postgresql.UUID(as_uuid=True), nullable=False, unique=True),
    )
    op.create_table(
        "configuration_models",
        sa.Column(
            "configuration_id",
            sa.BigInteger(),
            sa.ForeignKey("configurations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model_id", sa.BigInteger(), sa.ForeignKey("models.id", ondelete="RESTRICT"), primary_key=True),
    )
    op.create_index("ix_configuration_models_model_id", "configuration_models", ["model_id"])
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("message_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("published", postgresql.JSONB(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "command_outcomes",
        sa.Column("command_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("outcome_type", sa.String(100), nullable=False),
        sa.Column("event", postgresql.JSONB(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    for table in ("command_outcomes", "processed_messages", "configuration_models", "configurations", "models"):
        op.drop_table(table)
