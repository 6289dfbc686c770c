"""model versions: a result's versions (the one place for its model's bytes), windows of continuous
training, the version policy of inferences, the incremental settings of deployments

The bytes of each result's model move from ``artifacts`` into ``model_versions`` as version 1
(a bounded training's model is its version 1); an artifact whose final metrics had not come yet
goes back to ``artifact_chunks`` as one chunk, so the metrics service stores it as version 1 when
they come, as it would have. Waiting chunks are now keyed by version too.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB()


def result_id() -> sa.Column:  # type: ignore[type-arg]  # a key column of any table here: no one type argument fits
    return sa.Column(
        "result_id", sa.BigInteger(), sa.ForeignKey("training_results.id", ondelete="CASCADE"), primary_key=True
    )


def upgrade() -> None:
    op.create_table(
        "model_versions",
        result_id(),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(10), nullable=False),
        sa.Column("metrics", JSONB, nullable=False),
        sa.Column("window", sa.Integer(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "version_announcements",
        result_id(),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(10), nullable=False),
        sa.Column("metrics", JSONB, nullable=False),
        sa.Column("window", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "window_metrics",
        result_id(),
        sa.Column("window", sa.Integer(), primary_key=True),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("prequential", JSONB, nullable=False),
        sa.Column("train", JSONB, nullable=False),
        sa.Column("val", JSONB, nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("offsets", JSONB, nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    # Waiting chunks: keyed by version as well.
    op.add_column("artifact_chunks", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.drop_constraint("artifact_chunks_pkey", "artifact_chunks", type_="primary")
    op.create_primary_key("artifact_chunks_pkey", "artifact_chunks", ["result_id", "version", "index"])
    # The stored models become version 1; one still waiting for its final metrics waits as a chunk.
    op.execute(
        "INSERT INTO model_versions (result_id, version, sha256, size, format, metrics, data, created_at)"
        " SELECT a.result_id, 1, a.sha256, a.size, f.artifact_format, f.test_metrics, a.data, a.created_at"
        " FROM artifacts a JOIN final_metrics f ON f.result_id = a.result_id"
    )
    op.execute(
        'INSERT INTO artifact_chunks (result_id, version, "index", count, sha256, data)'
        " SELECT a.result_id, 1, 0, 1, a.sha256, a.data FROM artifacts a"
        " WHERE NOT EXISTS (SELECT 1 FROM final_metrics f WHERE f.result_id = a.result_id)"
        " ON CONFLICT DO NOTHING"
    )
    op.drop_table("artifacts")
    op.add_column("inferences", sa.Column("model_version", sa.Integer(), nullable=True))
    op.add_column("inferences", sa.Column("follow_latest", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("inferences", sa.Column("serving_version", sa.Integer(), nullable=True))
    # Every inference so far serves its result's one model.
    op.execute("UPDATE inferences SET model_version = 1")
    op.add_column("deployments", sa.Column("incremental", JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("deployments", "incremental")
    for column in ("serving_version", "follow_latest", "model_version"):
        op.drop_column("inferences", column)
    op.create_table(
        "artifacts",
        result_id(),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    # A result had one model: its newest version.
    op.execute(
        "INSERT INTO artifacts (result_id, sha256, size, data, created_at)"
        " SELECT DISTINCT ON (result_id) result_id, sha256, size, data, created_at FROM model_versions"
        " ORDER BY result_id, version DESC"
    )
    op.execute("DELETE FROM artifact_chunks WHERE version <> 1")
    op.drop_constraint("artifact_chunks_pkey", "artifact_chunks", type_="primary")
    op.create_primary_key("artifact_chunks_pkey", "artifact_chunks", ["result_id", "index"])
    op.drop_column("artifact_chunks", "version")
    for table in ("window_metrics", "version_announcements", "model_versions"):
        op.drop_table(table)
