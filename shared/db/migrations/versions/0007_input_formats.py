"""input formats up to TELEGRAF_STR_JSON (17 characters) for data sources and inferences

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COLUMNS = (("datasources", "input_format"), ("inferences", "input_format"))


def upgrade() -> None:
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.String(20), existing_type=sa.String(10), existing_nullable=False)


def downgrade() -> None:
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.String(10), existing_type=sa.String(20), existing_nullable=False)
