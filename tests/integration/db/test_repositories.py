"""The generic repository on a real PostgreSQL: what every domain repository inherits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.repositories import (
    ConfigurationRepository,
    DatasourceRepository,
    ModelRepository,
    OutcomeRepository,
    RepositoryBase,
)
from shared.db.tables import Configuration, ConfigurationModel, Model, ProcessedMessage
from shared.db.uow import SqlUnitOfWork

pytestmark = pytest.mark.integration


@pytest.fixture
async def session(database: str) -> AsyncIterator[AsyncSession]:
    engine = make_engine(database, pool_size=1)
    async with make_sessionmaker(engine)() as session:
        yield session
    await engine.dispose()


def model(name: str) -> Model:
    return Model(name=name, framework="pytorch", code="x", summary={}, command_id=uuid.uuid4())


async def test_add_flushes_and_returns_the_row_with_its_id(session: AsyncSession) -> None:
    models = ModelRepository(session)
    added = await models.add(model("a"))
    assert added.id is not None
    assert added.created_at is not None  # the server default came back with the insert
    assert await models.get(added.id) is added


async def test_all_is_ordered_by_id_and_get_misses_with_none(session: AsyncSession) -> None:
    models = ModelRepository(session)
    ids = [(await models.add(model(name))).id for name in ("c", "a", "b")]
    assert [m.id for m in await models.all()] == sorted(ids)
    assert await models.get(max(ids) + 100) is None


async def test_get_for_update_locks_and_returns_the_row(session: AsyncSession) -> None:
    models = ModelRepository(session)
    added = await models.add(model("a"))
    assert await models.get(added.id, for_update=True) is added


async def test_by_command_finds_the_row_a_command_created(session: AsyncSession) -> None:
    models = ModelRepository(session)
    added = await models.add(model("a"))
    assert await models.by_command(added.command_id) is added
    assert await models.by_command(uuid.uuid4()) is None


async def test_delete_removes_the_row(session: AsyncSession) -> None:
    models = ModelRepository(session)
    added = await models.add(model("a"))
    await models.delete(added.id)
    session.expunge_all()
    assert await models.get(added.id) is None


async def test_a_configuration_is_added_with_its_model_links(session: AsyncSession) -> None:
    first, second = [await ModelRepository(session).add(model(n)) for n in ("a", "b")]
    configurations = ConfigurationRepository(session)
    configuration = Configuration(name="c", command_id=uuid.uuid4())
    await configurations.add(configuration, [second.id, first.id])
    assert await configurations.model_ids([configuration.id]) == {configuration.id: sorted([first.id, second.id])}
    assert await ModelRepository(session).configurations_using(first.id) == [configuration.id]
    alone = await configurations.add(Configuration(name="d", command_id=uuid.uuid4()))
    assert await session.get(ConfigurationModel, (alone.id, first.id)) is None


async def test_a_table_keyed_by_uuid_works_the_same(session: AsyncSession) -> None:
    outcomes = OutcomeRepository(session)
    command_id = uuid.uuid4()
    await outcomes.record(command_id, "ModelCreated", {"payload": {}})
    await outcomes.record(command_id, "CommandRejected", {"payload": {}})  # the first outcome stays
    stored = await outcomes.get(command_id)
    assert stored is not None and stored.outcome_type == "ModelCreated"


async def test_the_unit_of_work_commits_or_rolls_back(database: str) -> None:
    engine = make_engine(database, pool_size=1)
    sessions = make_sessionmaker(engine)
    async with SqlUnitOfWork(sessions) as uow:
        kept = await uow.models.add(model("kept"))
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        dropped = await uow.models.add(model("dropped"))  # left without commit
    async with SqlUnitOfWork(sessions) as uow:
        assert [m.id for m in await uow.models.all()] == [kept.id]
        assert await uow.models.get(dropped.id) is None
        assert await DatasourceRepository(uow.session).all() == []
    await engine.dispose()


def test_a_composite_key_table_is_refused() -> None:
    with pytest.raises(TypeError, match="composite primary key"):

        class Processed(RepositoryBase[ProcessedMessage]):
            table = ProcessedMessage
