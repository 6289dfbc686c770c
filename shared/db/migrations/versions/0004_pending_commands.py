"""pending commands (waiting for another service's answer, with a deadline); when each
artifact chunk arrived (chunks of an artifact that never completes are purged); a data
source is keyed by its control message's position and timestamp (positions repeat after an
embedded broker's restart), and says why its data is gone when it is

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_commands",
        sa.Column("command_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("command_type", sa.String(100), nullable=False),
        sa.Column("awaiting", sa.String(100), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.add_column("datasources", sa.Column("record_timestamp", sa.BigInteger(), server_default="-1", nullable=False))
    op.add_column("datasources", sa.Column("lost", sa.Text(), nullable=True))
    op.drop_constraint("datasources_control_position", "datasources", type_="unique")
    op.create_unique_constraint(
        "datasources_control_record", "datasources", ["control_topic", "partition", "offset", "record_timestamp"]
    )
    op.add_column(
        "artifact_chunks",
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_constraint("datasources_control_record", "datasources", type_="unique")
    op.create_unique_constraint("datasources_control_position", "datasources", ["control_topic", "partition", "offset"])
    op.drop_column("datasources", "record_timestamp")
    op.drop_column("datasources", "lost")
    op.drop_column("artifact_chunks", "received_at")
    op.drop_table("pending_commands")
