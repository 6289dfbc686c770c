"""The Kafka clients people use, tried against the embedded broker: the table in docs/clients.md.

Each client runs ``probe.py`` in its own process (kafka-python 2.0.2 needs its own path), all
at once: produce, read without a group, and read in a fresh group with the client's defaults
and with the settings the docs give, timed from subscribe to the first record. The tests assert
on behaviour; the table is printed at the end of the run, and written into docs/clients.md
when ``KAFKAML_WRITE_CLIENT_TABLE=1``. Without it, only each cell's outcome (ok, fails, n/a) is
compared with the committed table, never its timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.inferencer.replica import serve
from shared.events.inference import InferenceStatusChanged
from shared.kafka import create_topics, ensure_topics, make_consumer
from shared.settings import Settings
from shared.stack.broker import Broker
from shared.topics import TopicSpec
from tests.conftest import REPO
from tests.integration.clients.conftest import TABLES
from tests.integration.inferencer.serving import digits, keras_digits, produce, publish_model, read_events, spec_for

pytestmark = pytest.mark.integration

PROBE = Path(__file__).with_name("probe.py")
DOCS = REPO / "docs/clients.md"
BEGIN, END = "<!-- client-table:begin -->", "<!-- client-table:end -->"
COUNT = 3
PROBE_TIMEOUT_S = 100.0  # above probe.py's GROUP_TIMEOUT_S
# What the docs' settings give a librdkafka group consumer on this broker: its first record within 8 s.
FIRST_RECORD_WITHIN_S = 8.0
# The same for every client, with room for faust's start-up (counted in its time) on two busy cores.
ANY_FIRST_RECORD_WITHIN_S = 15.0


@dataclass
class Row:
    """One client as a user installs it; ``advice`` is shown where one of its cells fails."""

    name: str
    client: str
    env: dict[str, str] = field(default_factory=dict)
    missing: str | None = None
    advice: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def client_rows(scratch: Path) -> list[Row]:
    # `make tools` installs kafka-python 2.0.2 next to the virtual environment's packages.
    old_kafka_python = Path(sys.prefix) / "clients" / "kafka-python-2.0.2"
    kcat = shutil.which("kcat")
    newer = newer_librdkafka(scratch)
    return [
        Row("aiokafka", "aiokafka"),
        Row("confluent-kafka", "confluent-kafka"),
        Row(
            "kafka-python 2.0.2 (upstream's pin)",
            "kafka-python",
            env={"PYTHONPATH": f"{old_kafka_python}{os.pathsep}{REPO}"},
            missing=None if old_kafka_python.is_dir() else "not installed (`make tools`)",
            advice="its JoinGroup v2 is answered MEMBER_ID_REQUIRED (79), unknown to 2.0.2: use kafka-python 3.0 "
            "(same code), or read without a group",
        ),
        Row("kafka-python (current)", "kafka-python"),
        Row(
            "kcat (Debian package)",
            "kcat",
            missing=None if kcat else "not installed (`make tools`)",
            advice="librdkafka 2.0.2 cannot parse the broker's ApiVersions answer: give kcat a newer one (next row)",
        ),
        Row(
            "kcat with a newer librdkafka",
            "kcat",
            env={"LD_LIBRARY_PATH": str(newer or "")},
            missing=None if kcat and newer else "needs kcat and confluent-kafka's librdkafka",
        ),
        Row("faust-streaming", "faust"),
    ]


def newer_librdkafka(scratch: Path) -> Path | None:
    """A folder whose librdkafka.so.1 is the copy inside the confluent-kafka wheel."""
    try:
        import confluent_kafka
    except ImportError:
        return None
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    if not found:
        return None
    folder = scratch / "librdkafka"
    folder.mkdir(exist_ok=True)
    link = folder / "librdkafka.so.1"
    if not link.exists():
        link.symlink_to(found[0])
    return folder


async def run_probe(row: Row, args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **row.env}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROBE),
        row.client,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return {"ok": False, "error": f"no answer within {PROBE_TIMEOUT_S:.0f} s"}
    # The last JSON object on stdout (faust writes terminal control codes before it).
    for line in reversed(out.decode(errors="replace").splitlines()):
        if '{"' in line:
            result: dict[str, Any] = json.loads(line[line.index('{"') :])
            return result
    return {"ok": False, "error": (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1][:160]}


async def count_records(settings: Settings, topic: str, within_s: float = 10.0) -> int:
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    got, deadline = 0, time.monotonic() + within_s
    try:
        while got < COUNT and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                got += len(records)
    finally:
        await consumer.stop()
    return got


async def measure(settings: Settings, rows: list[Row]) -> list[Row]:
    source = f"{settings.topic_prefix}.source"
    targets = {row.name: f"{settings.topic_prefix}.to-{index}" for index, row in enumerate(rows)}
    await create_topics(settings, [TopicSpec(name, 1) for name in (source, *targets.values())])
    await produce(settings, source, [(None, json.dumps({"values": [i]}).encode(), []) for i in range(COUNT)])
    jobs: dict[tuple[str, str], asyncio.Task[dict[str, Any]]] = {}
    common = ["--bootstrap", settings.brokers, "--src", source, "--count", str(COUNT)]
    for row in rows:
        if row.missing:
            continue
        group = f"{settings.topic_prefix}.{uuid.uuid4().hex[:6]}"
        jobs[row.name, "basic"] = asyncio.create_task(
            run_probe(row, ["basic", *common, "--dst", targets[row.name], "--group", group + "-b"])
        )
        jobs[row.name, "defaults"] = asyncio.create_task(run_probe(row, ["group", *common, "--group", group + "-d"]))
        jobs[row.name, "documented"] = asyncio.create_task(
            run_probe(row, ["group", *common, "--group", group + "-s", "--documented"])
        )
    await asyncio.gather(*jobs.values())
    for row in rows:
        if row.missing:
            continue
        basic = jobs[row.name, "basic"].result()
        if "unavailable" in basic:
            row.missing = f"does not run here: {basic['unavailable']}"
            continue
        if "produce" not in basic:
            row.missing = f"the probe failed: {basic.get('error')}"
            continue
        produced = basic["produce"]
        if produced.get("ok"):
            # Acknowledged is not enough: the records must be there for another client to read.
            stored = await count_records(settings, targets[row.name])
            if stored < COUNT:
                produced = {"ok": False, "error": f"acknowledged, but {stored} of {COUNT} records stored"}
        row.results = {
            "version": {"text": basic.get("version", "?")},
            "produce": produced,
            "plain": basic["plain"],
            "defaults": jobs[row.name, "defaults"].result(),
            "documented": jobs[row.name, "documented"].result(),
        }
    return rows


# --- the table -------------------------------------------------------------------------------

COLUMNS = ["produce", "plain", "defaults", "documented"]
HEADER = (
    "| client | version | produce | read without a group | read in a group, client's defaults "
    "| read in a group, settings below | where a cell fails |\n|---|---|---|---|---|---|---|"
)


def cell(result: dict[str, Any]) -> str:
    if "skip" in result:
        return f"n/a: {result['skip']}"
    if result.get("ok"):
        seconds = result.get("seconds")
        return "ok" if seconds is None else f"ok, first record after {seconds:.1f} s"
    reason = result.get("error") or f"{result.get('count', 0)} of {COUNT} records"
    return "fails: " + str(reason).replace("|", "/")


def table(rows: list[Row]) -> str:
    lines = [HEADER]
    for row in rows:
        if row.missing:
            lines.append(f"| {row.name} | | {' | '.join([row.missing] * 4)} | |")
            continue
        cells = [cell(row.results[column]) for column in COLUMNS]
        advice = row.advice if any(c.startswith("fails") for c in cells) else ""
        lines.append(f"| {row.name} | {row.results['version']['text']} | {' | '.join(cells)} | {advice} |")
    return "\n".join(lines)


def outcomes(markdown: str) -> dict[str, list[str]]:
    """Each row's cells reduced to their outcome: ok, fails, n/a (timings and reasons dropped)."""
    found: dict[str, list[str]] = {}
    for line in markdown.splitlines():
        parts = [part.strip() for part in line.strip().strip("|").split("|")]
        if len(parts) >= 6 and parts[0] not in ("client", "---"):
            found[parts[0]] = [part.split(":")[0].split(",")[0] for part in parts[2:6]]
    return found


def committed_table() -> str:
    text = DOCS.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)] if BEGIN in text else ""


def write_table(markdown: str) -> None:
    text = DOCS.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOCS.write_text(f"{head}{BEGIN}\n{markdown}\n{END}{tail}")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka(broker: Broker, stack_home: Path) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        home=stack_home, bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix, control_topic=f"{prefix}.ctl"
    )


@pytest.fixture(scope="module")
async def matrix(kafka: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[asyncio.Task[list[Row]]]:
    """Starts every probe at once, in the background: the first test runs while they wait on joins."""
    task = asyncio.create_task(measure(kafka, client_rows(tmp_path_factory.mktemp("clients"))))
    yield task
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(scope="module")
async def rows(matrix: asyncio.Task[list[Row]]) -> list[Row]:
    measured = await matrix
    markdown = table(measured)
    TABLES.append(markdown)
    if os.environ.get("KAFKAML_WRITE_CLIENT_TABLE") == "1":
        write_table(markdown)
    return measured


def row_named(rows: list[Row], prefix: str) -> Row:
    return next(row for row in rows if row.name.startswith(prefix))


# --- acceptance: upstream's reading pattern, a served digits model ------------------------------

ITEMS = 40


async def test_upstream_mnist_reading_pattern_reads_every_prediction_of_a_served_digits_model_once(
    kafka: Settings, matrix: asyncio.Task[list[Row]]
) -> None:
    """examples/read_predictions.py: upstream's consumer, with the one change the docs give."""
    _, labels = digits()
    artifact = await asyncio.to_thread(keras_digits)
    input_topic, output_topic = f"{kafka.topic_prefix}.digits-in", f"{kafka.topic_prefix}.digits-out"
    await ensure_topics(kafka)
    await create_topics(kafka, [TopicSpec(input_topic, 1), TopicSpec(output_topic, 1)])
    spec = spec_for(kafka, artifact, input_topic=input_topic, output_topic=output_topic)
    await publish_model(kafka, spec, artifact)
    stop = asyncio.Event()
    replica = asyncio.create_task(serve(kafka, spec, "0", stop=stop, artifact_timeout_s=30))
    try:
        await read_events(kafka, lambda found: any(running(e) for e in found))
        group = f"{kafka.topic_prefix}.output_group"
        example = [sys.executable, str(REPO / "examples" / "read_predictions.py"), "--bootstrap-servers", kafka.brokers]
        example += ["--input-topic", input_topic, "--output-topic", output_topic, "--group", group]
        first = await run_example([*example, "--items", str(ITEMS)])
        # The same group again: everything was committed, so nothing is read twice.
        second = await run_example([*example, "--items", "0", "--idle-timeout-s", "8"])
    finally:
        stop.set()
        status = await asyncio.wait_for(replica, 30)
    assert status == "stopped"

    assert first.returncode == 0, first.output
    printed = [line.split("  ", 1)[1] for line in first.lines if re.match(r"\d+: digit", line)]
    predictions = [json.loads(text)["values"] for text in printed]
    assert len(predictions) == ITEMS, first.output
    assert all(len(values) == 10 for values in predictions)
    # One partition: predictions come back in input order.
    accuracy = np.mean([int(np.argmax(values)) == labels[i] for i, values in enumerate(predictions)])
    assert accuracy >= 0.9, accuracy
    assert second.returncode == 0 and "0 predictions" in second.output, second.output


def running(event: Any) -> bool:
    return isinstance(event, InferenceStatusChanged) and event.payload.status == "running"


@dataclass
class Finished:
    returncode: int
    output: str

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()


async def run_example(command: list[str]) -> Finished:
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    return Finished(process.returncode or 0, out.decode(errors="replace"))


# --- acceptance: a librdkafka group consumer with the docs' settings ---------------------------


async def test_a_librdkafka_group_consumer_with_the_documented_settings_gets_its_first_record_within_8_s(
    rows: list[Row],
) -> None:
    confluent = row_named(rows, "confluent-kafka")
    assert not confluent.missing, confluent.missing
    documented = confluent.results["documented"]
    assert documented.get("ok"), documented
    assert documented["seconds"] < FIRST_RECORD_WITHIN_S, documented


# --- the rest of the table ----------------------------------------------------------------------


async def test_every_current_client_produces_reads_and_joins_quickly_with_the_documented_settings(
    rows: list[Row],
) -> None:
    for row in rows:
        if row.missing or row.advice:  # the rows with advice are the ones documented as failing
            continue
        results = row.results
        assert results["produce"].get("ok"), (row.name, results["produce"])
        assert results["plain"].get("ok") or "skip" in results["plain"], (row.name, results["plain"])
        assert results["defaults"].get("ok"), (row.name, results["defaults"])
        assert results["documented"].get("ok"), (row.name, results["documented"])
        assert results["documented"]["seconds"] < ANY_FIRST_RECORD_WITHIN_S, (row.name, results["documented"])


async def test_the_table_in_the_docs_has_the_outcomes_measured_here(rows: list[Row]) -> None:
    measured = outcomes(table(rows))
    committed = outcomes(committed_table())
    differ = {
        name: (committed.get(name), cells)
        for name, cells in measured.items()
        if not row_named(rows, name).missing and committed.get(name) != cells
    }
    assert not differ, f"docs/clients.md is out of date (rerun with KAFKAML_WRITE_CLIENT_TABLE=1): {differ}"
