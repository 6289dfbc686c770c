"""Every query of the provisioned Grafana dashboards runs against a real PostgreSQL
with the project's schema and sample rows, as Grafana runs it: through the
read-only role the pre-start step creates (deploy/docker/scripts/prestart.py),
with Grafana's macros (``$__timeFilter``, ``$__timeGroupAlias``…) and template
variables expanded, and each returns rows."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import pytest

from shared.db.roles import plain_url, url_for_role

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((REPO / "deploy/grafana/dashboards").glob("*.json"))
INTERVAL_S = 60


@dataclass(frozen=True)
class Window:
    """The dashboard's time range, taken when the test runs (rows default to now() as they are written,
    so a range fixed at import would miss them once the tests before this one ran long)."""

    now: datetime
    start: datetime
    end: datetime

    @classmethod
    def around_now(cls) -> Window:
        now = datetime.now(UTC)
        return cls(now=now, start=now - timedelta(days=1), end=now + timedelta(minutes=5))


# The inference tables as migration 0003 creates them (created here only while it is missing).
INFERENCE_TABLES = """
CREATE TABLE IF NOT EXISTS inferences (
    id bigint PRIMARY KEY,
    result_id bigint NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS inference_stats (
    id bigserial PRIMARY KEY,
    inference_id bigint NOT NULL,
    replica text NOT NULL,
    recorded_at timestamptz NOT NULL,
    window_s float NOT NULL,
    messages bigint NOT NULL,
    throughput float NOT NULL,
    latency_p50_ms float,
    latency_p95_ms float,
    latency_p99_ms float,
    errors bigint NOT NULL DEFAULT 0,
    lag bigint NULL,
    predicted jsonb NOT NULL DEFAULT '{}'
);
"""


def panels() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            found.append((path.stem, panel["title"], panel))
    return found


def variables() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.stem, variable) for path in DASHBOARDS for variable in json.loads(path.read_text())["templating"]["list"]
    ]


def annotation_queries() -> list[tuple[str, str, dict[str, Any]]]:
    """The dashboards' annotation queries (model versions marked on the time axis)."""
    return [
        (path.stem, annotation["name"], annotation["target"])
        for path in DASHBOARDS
        for annotation in json.loads(path.read_text()).get("annotations", {}).get("list", [])
        if "target" in annotation
    ]


def _literal(moment: datetime) -> str:
    return f"'{moment.isoformat()}'::timestamptz"


def expand(sql: str, values: dict[str, str], window: Window) -> str:
    """Grafana's PostgreSQL macros and template variables, expanded as its datasource does."""

    def time_filter(match: re.Match[str]) -> str:
        column = match.group(1).strip()
        return f"{column} BETWEEN {_literal(window.start)} AND {_literal(window.end)}"

    def time_group(match: re.Match[str], alias: bool) -> str:
        column = match.group(1).strip()
        expression = f"to_timestamp(floor(extract(epoch from {column})/{INTERVAL_S})*{INTERVAL_S})"
        return f'{expression} AS "time"' if alias else expression

    sql = re.sub(r"\$__timeFilter\(([^)]*)\)", time_filter, sql)
    sql = re.sub(r"\$__timeGroupAlias\(([^,]*),[^)]*\)", lambda m: time_group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^,]*),[^)]*\)", lambda m: time_group(m, False), sql)
    sql = sql.replace("$__timeFrom()", _literal(window.start)).replace("$__timeTo()", _literal(window.end))
    sql = sql.replace("$__interval_ms", str(INTERVAL_S * 1000)).replace("$__interval", f"{INTERVAL_S}s")
    for name, value in values.items():
        sql = sql.replace(f"${{{name}}}", value).replace(f"${name}", value)
    leftover = re.findall(r"\$\{?\w+", sql)
    assert not leftover, f"unexpanded macros or variables: {leftover}"
    return sql


def load_prestart() -> ModuleType:
    path = REPO / "deploy/docker/scripts/prestart.py"
    spec = importlib.util.spec_from_file_location("kafkaml_prestart", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def fill_required(connection: asyncpg.Connection, table: str, row: dict[str, Any], now: datetime) -> None:
    """Inserts ``row``, giving every other required column (added by later migrations) a value."""
    columns = await connection.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = $1 AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'",
        table,
    )
    defaults: dict[str, Any] = {"text": "x", "character varying": "x", "jsonb": {}, "boolean": False, "bytea": b"m"}
    for column in columns:
        name, kind = column["column_name"], column["data_type"]
        if name in row:
            continue
        if kind in ("bigint", "integer", "smallint"):
            row[name] = 1
        elif kind in ("double precision", "real", "numeric"):
            row[name] = 0.0
        elif kind.startswith("timestamp"):
            row[name] = now
        elif kind == "uuid":
            row[name] = uuid.uuid4()
        else:
            row[name] = defaults[kind]
    names = ", ".join(f'"{n}"' for n in row)
    marks = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    values = [json.dumps(v) if isinstance(v, dict | list) else v for v in row.values()]
    await connection.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", *values)


async def sample_rows(url: str, now: datetime) -> dict[str, str]:
    connection = await asyncpg.connect(plain_url(url))
    try:
        await connection.execute(INFERENCE_TABLES)
        model_ids = []
        for name, framework in (("digits-keras", "tensorflow"), ("digits-torch", "pytorch")):
            model_ids.append(
                await connection.fetchval(
                    "INSERT INTO models (name, framework, code, imports, description, summary, command_id) "
                    "VALUES ($1, $2, 'model = 1', '', '', '{}', $3) RETURNING id",
                    name,
                    framework,
                    uuid.uuid4(),
                )
            )
        configuration = await connection.fetchval(
            "INSERT INTO configurations (name, description, command_id) VALUES ('c', '', $1) RETURNING id", uuid.uuid4()
        )
        deployment = await connection.fetchval(
            "INSERT INTO deployments (configuration_id, batch_size, fit, evaluate, confusion_matrix, gpus, command_id) "
            "VALUES ($1, 32, '{}', '{}', false, 0, $2) RETURNING id",
            configuration,
            uuid.uuid4(),
        )
        job = uuid.uuid4()
        await connection.execute(
            "INSERT INTO training_jobs (id, deployment_id, spec) VALUES ($1, $2, '{}')", job, deployment
        )
        results = []
        for model, status, error in (
            (model_ids[0], "finished", None),
            (model_ids[1], "failed", "the trainer in pod kafkaml-train-x was OOMKilled (exit code 137)"),
        ):
            results.append(
                await connection.fetchval(
                    "INSERT INTO training_results (deployment_id, model_id, job_id, status, error, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, now() - interval '10 minutes') RETURNING id",
                    deployment,
                    model,
                    job,
                    status,
                    error,
                )
            )
        for result in results:
            for epoch in range(1, 6):
                train = {"loss": 1.0 / epoch, "sparse_categorical_accuracy": 0.5 + epoch / 20}
                val = {"loss": 1.1 / epoch, "sparse_categorical_accuracy": 0.45 + epoch / 20, "diverged": None}
                await connection.execute(
                    "INSERT INTO epoch_metrics (result_id, epoch, train, val) VALUES ($1, $2, $3, $4)",
                    result,
                    epoch,
                    json.dumps(train),
                    json.dumps(val),
                )
        await connection.execute(
            "INSERT INTO final_metrics (result_id, test_metrics, confusion_matrix, training_time, samples, "
            "artifact_sha256, artifact_format) VALUES ($1, $2, NULL, 12.5, $3, $4, 'keras')",
            results[0],
            json.dumps({"loss": 0.2, "sparse_categorical_accuracy": 0.93}),
            json.dumps({"train": 1200, "validation": 300, "test": 297, "bad": 0}),
            "0" * 64,
        )
        # A continuous training: three windows (one with a null metric, as a diverged window reports),
        # two of which made versions.
        for window in (1, 2, 3):
            prequential = {"loss": 1.0 / window, "accuracy": 0.6 + window / 10 if window != 2 else None}
            row = {
                "result_id": results[0],
                "window": window,
                "samples": 256,
                "prequential": prequential,
                "train": {"loss": 0.9 / window, "accuracy": 0.65 + window / 10},
                "val": {},
                "version": window if window != 2 else None,
                "created_at": now - timedelta(minutes=10 - window),
            }
            await fill_required(connection, "window_metrics", row, now)
        for version in (1, 3):
            row = {
                "result_id": results[0],
                "version": version,
                "sha256": f"{version:064x}",
                "metrics": {"accuracy": 0.6 + version / 10},
                "window": version,
                "created_at": now - timedelta(minutes=10 - version),
            }
            await fill_required(connection, "model_versions", row, now)
        await fill_required(connection, "inferences", {"id": 7, "result_id": results[0], "status": "running"}, now)
        await fill_required(connection, "inferences", {"id": 8, "result_id": results[0], "status": "failed"}, now)
        for minute in range(0, 30, 2):
            for replica, lag in (("kafkaml-infer-7-a", 10), ("kafkaml-infer-7-b", None)):
                row = {
                    "inference_id": 7,
                    "replica": replica,
                    "recorded_at": now - timedelta(minutes=minute),
                    "window_s": 5.0,
                    "messages": 500,
                    "throughput": 100.0,
                    "latency_p50_ms": 4.2,
                    "latency_p95_ms": 9.5,
                    "latency_p99_ms": 14.1,
                    "errors": 1,
                    "lag": lag,
                    "predicted": {"0": 120, "3": 300, "9": 80},
                }
                await fill_required(connection, "inference_stats", row, now)
    finally:
        await connection.close()
    # Grafana formats a multi-value variable for SQL as quoted, comma-separated values.
    return {"result": ",".join(f"'{r}'" for r in results), "inference": "'7','8'"}


async def test_every_dashboard_query_runs_on_postgresql_through_the_read_only_role(database: str) -> None:
    assert DASHBOARDS, "no dashboards in deploy/grafana/dashboards"
    role, password = f"kafkaml_grafana_{uuid.uuid4().hex[:8]}", "grafana-test-password"
    prestart = load_prestart()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KAFKAML_DATABASE_URL", database)
        env.delenv("KAFKAML_API_DATABASE_URL", raising=False)
        env.setenv("KAFKAML_GRAFANA_DB_USER", role)
        env.setenv("KAFKAML_GRAFANA_DB_PASSWORD", password)
        await asyncio.to_thread(prestart.migrate)  # idempotent: the schema is at head already
    window = Window.around_now()
    values = await sample_rows(database, window.now)

    grafana = await asyncpg.connect(url_for_role(plain_url(database), role, password))
    try:
        assert await grafana.fetchval("SHOW default_transaction_read_only") == "on"
        ran = 0
        for dashboard, variable in variables():
            rows = await grafana.fetch(expand(variable["query"], values, window))
            assert rows and {"__value", "__text"} <= set(rows[0].keys()), f"{dashboard}: variable {variable['name']}"
            ran += 1
        for dashboard, title, panel in panels():
            assert panel["datasource"]["uid"] == "kafkaml-postgres", f"{dashboard}/{title}"
            for target in panel["targets"]:
                sql = expand(target["rawSql"], values, window)
                try:
                    rows = await grafana.fetch(sql)
                except asyncpg.PostgresError as exc:
                    pytest.fail(f"{dashboard} / {title}: {type(exc).__name__}: {exc}\n{sql}")
                assert rows, f"{dashboard} / {title}: no rows from the sample data\n{sql}"
                if target["format"] == "time_series":
                    assert "time" in rows[0], f"{dashboard} / {title}: a time series needs a time column"
                ran += 1
        for dashboard, name, target in annotation_queries():
            sql = expand(target["rawSql"], values, window)
            rows = await grafana.fetch(sql)
            assert rows and {"time", "text"} <= set(rows[0].keys()), f"{dashboard}: annotation {name}\n{sql}"
            ran += 1
        assert ran >= 19
        # Read-only: Grafana cannot write.
        with pytest.raises(asyncpg.PostgresError):
            await grafana.execute("DELETE FROM training_results")
    finally:
        await grafana.close()


def test_dashboards_cover_what_the_issue_asks_for() -> None:
    titles = " | ".join(title.lower() for _, title, _ in panels())
    for wanted in ("loss per epoch", "throughput", "latency", "predicted classes", "consumer lag", "failed training"):
        assert wanted in titles, wanted
    # Continuous learning (issue 12): the prequential curve per window and the versions, also on the time axis.
    for wanted in ("prequential metrics over time", "per window", "model versions"):
        assert wanted in titles, wanted
    assert any(name == "Model versions" for _, name, _ in annotation_queries())
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"].startswith("Kafka-ML")
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
