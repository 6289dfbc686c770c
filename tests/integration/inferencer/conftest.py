"""The inferencer tests' broker settings (no database: a replica has none)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.stack.broker import Broker


@pytest.fixture
def kafka(broker: Broker, stack_home: Path) -> Settings:
    """The session's broker with a topic prefix of our own (no database: a replica has none)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        home=stack_home, bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix, control_topic=f"{prefix}.ctl"
    )
