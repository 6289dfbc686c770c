"""The control logger's table: the data sources that control messages announced.

Only the control logger writes it (one row per control message, keyed by its position
in the control topic); the orchestrator and the API read it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Identity, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables.base import Base, ControlFormat, StorableJSON, StorableText


class Datasource(Base):
    __tablename__ = "datasources"
    # A record's position alone repeats after an embedded broker's restart (offsets start at 0
    # again): with its timestamp it names one control message.
    __table_args__ = (
        UniqueConstraint("control_topic", "partition", "offset", "record_timestamp", name="datasources_control_record"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(BigInteger, index=True)
    topic: Mapped[str] = mapped_column(StorableText)
    # The control logger records only messages that parse, and they announce RAW or AVRO.
    input_format: Mapped[ControlFormat] = mapped_column(String(20))
    input_config: Mapped[dict[str, Any]] = mapped_column(StorableJSON)
    validation_rate: Mapped[float] = mapped_column(Float)
    test_rate: Mapped[float] = mapped_column(Float)
    total_msg: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    description: Mapped[str] = mapped_column(StorableText, default="")
    unsupervised_topic: Mapped[str | None] = mapped_column(StorableText, nullable=True)
    dataset_restrictions: Mapped[Any] = mapped_column(StorableJSON, nullable=True)
    incremental: Mapped[bool] = mapped_column(Boolean, default=False)
    control_topic: Mapped[str] = mapped_column(StorableText)
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    # The control message's timestamp (ms); -1 for rows recorded before it was kept.
    record_timestamp: Mapped[int] = mapped_column(BigInteger, server_default="-1")
    # Why the announced data no longer exists (its topic is gone: an embedded broker's restart), or None.
    lost: Mapped[str | None] = mapped_column(StorableText, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
