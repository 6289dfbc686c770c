"""Bounded growth on a real PostgreSQL: old ids forgotten, old statistics folded, orphan chunks dropped."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.repositories import Housekeeping
from shared.db.roles import plain_url
from tests.integration.rows import add_result

pytestmark = pytest.mark.integration

OLD = datetime.now(UTC) - timedelta(days=3)


async def add_inference(connection: asyncpg.Connection, database: str) -> int:
    rows = await add_result(database, "finished")
    inference: int = await connection.fetchval(
        "INSERT INTO inferences (result_id, model_id, replicas, input_topic, output_topic, input_format,"
        " input_config, gpus, status, job_id, spec, command_id)"
        " VALUES ($1, $2, 1, 'in', 'out', 'RAW', '{}', 0, 'running', gen_random_uuid(), '{}', gen_random_uuid())"
        " RETURNING id",
        rows.result,
        rows.model,
    )
    return inference


async def add_stat(connection: asyncpg.Connection, inference: int, at: datetime, **values: object) -> None:
    row = {"messages": 100, "throughput": 20.0, "p50": 2.0, "p99": 9.0, "errors": 0, "predicted": {"1": 100}}
    row.update(values)
    await connection.execute(
        "INSERT INTO inference_stats (inference_id, replica, recorded_at, window_s, messages, throughput,"
        " latency_p50_ms, latency_p95_ms, latency_p99_ms, errors, lag, predicted, event_id)"
        " VALUES ($1, 'r0', $2, 5, $3, $4, $5, $6, $6, $7, 3, $8::jsonb, gen_random_uuid())",
        inference,
        at,
        row["messages"],
        row["throughput"],
        row["p50"],
        row["p99"],
        row["errors"],
        json.dumps(row["predicted"]),
    )


async def test_housekeeping_forgets_folds_and_drops_only_what_is_old(database: str) -> None:
    connection = await asyncpg.connect(plain_url(database))
    engine = make_engine(database, pool_size=1)
    sessions = make_sessionmaker(engine)
    try:
        for consumer, when in (("orchestrator", OLD), ("orchestrator", datetime.now(UTC)), ("metrics", OLD)):
            await connection.execute(
                "INSERT INTO processed_messages (consumer, message_id, published, processed_at)"
                " VALUES ($1, $2, '[]', $3)",
                consumer,
                uuid.uuid4(),
                when,
            )
        inference = await add_inference(connection, database)
        hour = OLD.replace(minute=0, second=0, microsecond=0)
        await add_stat(connection, inference, hour + timedelta(minutes=1), messages=100, p50=2.0, predicted={"1": 100})
        await add_stat(connection, inference, hour + timedelta(minutes=2), messages=300, p50=6.0, p99=20.0, errors=2)
        await add_stat(connection, inference, datetime.now(UTC), messages=7)  # recent: kept as it is
        for index, when in ((0, OLD), (1, datetime.now(UTC))):
            await connection.execute(
                "INSERT INTO artifact_chunks (result_id, index, count, sha256, data, received_at)"
                " VALUES (99, $1, 3, 'ab', 'x', $2)",
                index,
                when,
            )
        result = await connection.fetchval("SELECT result_id FROM inferences WHERE id = $1", inference)
        for version, when in ((1, OLD), (2, datetime.now(UTC))):
            await connection.execute(
                "INSERT INTO version_announcements (result_id, version, sha256, size, format, metrics, received_at)"
                " VALUES ($1, $2, 'ab', 1, 'pt', '{}', $3)",
                result,
                version,
                when,
            )

        async with sessions() as session:
            tidy = Housekeeping(session)
            forgotten = await tidy.forget_processed("orchestrator", timedelta(days=1))
            folded = await tidy.fold_statistics(timedelta(days=1))
            dropped = await tidy.purge_orphan_chunks(timedelta(days=1))
            await session.commit()
        async with sessions() as session:
            again = await Housekeeping(session).fold_statistics(timedelta(days=1))
            await session.commit()

        assert forgotten == 1
        assert await connection.fetchval("SELECT count(*) FROM processed_messages") == 2, "others' and recent ids stay"
        assert (folded.read, folded.written) == (2, 1)
        assert (again.read, again.written) == (0, 0), "a folded row is not folded again"
        stats = await connection.fetch("SELECT * FROM inference_stats ORDER BY recorded_at")
        assert [s["messages"] for s in stats] == [400, 7]
        hourly = stats[0]
        assert hourly["latency_p50_ms"] == pytest.approx((100 * 2.0 + 300 * 6.0) / 400)
        assert (hourly["latency_p99_ms"], hourly["errors"]) == (20.0, 2)
        assert json.loads(hourly["predicted"]) == {"1": 200}
        assert hourly["throughput"] == pytest.approx(400 / 10)
        assert dropped == 1 and await connection.fetchval("SELECT count(*) FROM artifact_chunks") == 1
        assert await connection.fetchval("SELECT array_agg(version) FROM version_announcements") == [2]
    finally:
        await connection.close()
        await engine.dispose()
