"""Text that user code controls is stored whatever it holds: PostgreSQL refuses NUL in text and
jsonb, and a refused row would lose the message that carried it (a command would never end)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.tables import CommandOutcome, Model

pytestmark = pytest.mark.integration


async def test_nul_and_lone_surrogates_are_stored_as_replacement_characters(database: str) -> None:
    engine = make_engine(database, pool_size=1)
    sessions = make_sessionmaker(engine)
    command_id = uuid.uuid4()
    try:
        async with sessions() as session:
            session.add(
                Model(
                    name="bad\x00name",
                    framework="pytorch",
                    code="raise RuntimeError('\x00')\n# \ud800",
                    summary={"layers": [{"name": "a\x00b"}], "ke\x00y": 1},
                    command_id=command_id,
                )
            )
            detail = {"payload": {"detail": "RuntimeError: bad\x00byte (line 1)", "status": 422}}
            session.add(CommandOutcome(command_id=command_id, outcome_type="CommandRejected", event=detail))
            await session.commit()
        async with sessions() as session:
            stored = (await session.scalars(select(Model))).one()
            outcome = await session.get(CommandOutcome, command_id)
    finally:
        await engine.dispose()
    assert stored.name == "bad\ufffdname"
    assert stored.code == "raise RuntimeError('\ufffd')\n# \ufffd"
    assert stored.summary == {"layers": [{"name": "a\ufffdb"}], "ke\ufffdy": 1}
    assert outcome is not None and outcome.event["payload"]["detail"] == "RuntimeError: bad\ufffdbyte (line 1)"
