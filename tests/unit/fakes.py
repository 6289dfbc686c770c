"""In-memory stand-ins for the unit of work, for handler tests (pure logic only)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Self

from shared.db.tables import (
    Configuration,
    Datasource,
    Deployment,
    Inference,
    Model,
    ModelVersionRow,
    TrainingJob,
    TrainingResult,
)
from shared.events.inference import ServeSpec
from shared.events.training import JobModel, JobSpec


class FakeModels:
    def __init__(self) -> None:
        self.rows: dict[int, Model] = {}
        self.ids = itertools.count(1)
        self.config_links: dict[int, list[int]] = {}

    async def add(self, model: Model) -> Model:
        model.id = next(self.ids)
        model.created_at = datetime.now(UTC)
        self.rows[model.id] = model
        return model

    async def get(self, model_id: int) -> Model | None:
        return self.rows.get(model_id)

    async def by_command(self, command_id: uuid.UUID) -> Model | None:
        return next((m for m in self.rows.values() if m.command_id == command_id), None)

    async def all(self) -> Sequence[Model]:
        return list(self.rows.values())

    async def delete(self, model_id: int) -> None:
        del self.rows[model_id]

    async def upper_links(self) -> dict[int, int | None]:
        return {m.id: m.upper_model_id for m in self.rows.values()}

    async def configurations_using(self, model_id: int) -> list[int]:
        return sorted(c for c, models in self.config_links.items() if model_id in models)


class FakeConfigurations:
    def __init__(self, models: FakeModels) -> None:
        self.models = models
        self.rows: dict[int, Configuration] = {}
        self.ids = itertools.count(1)

    async def add(self, configuration: Configuration, model_ids: Sequence[int]) -> Configuration:
        configuration.id = next(self.ids)
        configuration.created_at = datetime.now(UTC)
        self.rows[configuration.id] = configuration
        self.models.config_links[configuration.id] = list(model_ids)
        return configuration

    async def get(self, configuration_id: int) -> Configuration | None:
        return self.rows.get(configuration_id)

    async def by_command(self, command_id: uuid.UUID) -> Configuration | None:
        return next((c for c in self.rows.values() if c.command_id == command_id), None)

    async def model_ids(self, configuration_ids: Sequence[int]) -> dict[int, list[int]]:
        return {c: list(self.models.config_links.get(c, [])) for c in configuration_ids}

    async def delete(self, configuration_id: int) -> None:
        del self.rows[configuration_id]
        self.models.config_links.pop(configuration_id, None)

    async def deployments_using(self, configuration_id: int) -> list[int]:
        return []


class FakeDeployments:
    def __init__(self) -> None:
        self.rows: dict[int, Deployment] = {}
        self.ids = itertools.count(1)

    async def add(self, deployment: Deployment) -> Deployment:
        deployment.id = next(self.ids)
        deployment.created_at = datetime.now(UTC)
        self.rows[deployment.id] = deployment
        return deployment

    async def get(self, deployment_id: int) -> Deployment | None:
        return self.rows.get(deployment_id)

    async def by_command(self, command_id: uuid.UUID) -> Deployment | None:
        return next((d for d in self.rows.values() if d.command_id == command_id), None)


class FakeTraining:
    def __init__(self) -> None:
        self.jobs: dict[uuid.UUID, TrainingJob] = {}
        self.rows: dict[int, TrainingResult] = {}
        self.ids = itertools.count(1)

    async def add_job(self, job: TrainingJob, results: Sequence[TrainingResult]) -> list[TrainingResult]:
        self.jobs[job.id] = job
        for result in results:
            result.id = next(self.ids)
            self.rows[result.id] = result
        return list(results)

    async def job(self, job_id: uuid.UUID) -> TrainingJob | None:
        return self.jobs.get(job_id)

    async def result(self, result_id: int, *, for_update: bool = False) -> TrainingResult | None:
        return self.rows.get(result_id)

    async def results(
        self, *, deployment_ids: Sequence[int] | None = None, job_id: uuid.UUID | None = None
    ) -> Sequence[TrainingResult]:
        return [
            r
            for r in self.rows.values()
            if (deployment_ids is None or r.deployment_id in deployment_ids) and (job_id is None or r.job_id == job_id)
        ]

    async def active_jobs(self) -> Sequence[TrainingJob]:
        active = {r.job_id for r in self.rows.values() if r.status in ("created", "waiting_data", "training")}
        return [self.jobs[j] for j in active]


class FakeDatasources:
    def __init__(self) -> None:
        self.rows: dict[int, Datasource] = {}

    async def get(self, datasource_id: int) -> Datasource | None:
        return self.rows.get(datasource_id)

    async def of_deployment(self, deployment_id: int) -> list[Datasource]:
        return [row for row in self.rows.values() if row.deployment_id == deployment_id]


class FakeInferences:
    def __init__(self) -> None:
        self.rows: dict[int, Inference] = {}
        self.ids = itertools.count(1)

    async def add(self, inference: Inference) -> Inference:
        inference.id = next(self.ids)
        inference.created_at = datetime.now(UTC)
        self.rows[inference.id] = inference
        return inference

    async def get(self, inference_id: int, *, for_update: bool = False) -> Inference | None:
        return self.rows.get(inference_id)

    async def delete(self, inference_id: int) -> None:
        del self.rows[inference_id]

    async def following(self, result_id: int) -> Sequence[Inference]:
        return [
            i
            for i in self.rows.values()
            if i.result_id == result_id and i.follow_latest and i.status in ("starting", "running")
        ]


class FakeVersions:
    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], ModelVersionRow] = {}

    def put(self, result_id: int, version: int, data: bytes, *, fmt: str = "keras") -> ModelVersionRow:
        """A stored version (the metrics service writes them in production)."""
        import hashlib

        row = ModelVersionRow(
            result_id=result_id,
            version=version,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            format=fmt,
            metrics={},
            window=None,
            data=data,
            created_at=datetime.now(UTC),
        )
        self.rows[(result_id, version)] = row
        return row

    async def get(self, result_id: int, version: int | None = None, *, data: bool = True) -> ModelVersionRow | None:
        if version is not None:
            return self.rows.get((result_id, version))
        mine = [v for (r, v) in self.rows if r == result_id]
        return self.rows[(result_id, max(mine))] if mine else None

    async def of_result(self, result_id: int) -> Sequence[ModelVersionRow]:
        return [self.rows[k] for k in sorted(self.rows) if k[0] == result_id]

    async def newest(self, result_ids: Sequence[int]) -> dict[int, int]:
        return {r: max(v for (q, v) in self.rows if q == r) for r in {q for (q, _) in self.rows} if r in result_ids}


class FakeProcessed:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, uuid.UUID], list[dict[str, Any]]] = {}

    async def seen(self, consumer: str, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
        return {m: self.rows[(consumer, m)] for m in message_ids if (consumer, m) in self.rows}

    async def add_many(self, consumer: str, published: Mapping[uuid.UUID, list[dict[str, Any]]]) -> None:
        for message_id, answers in published.items():
            self.rows[(consumer, message_id)] = answers


class FakeOutcomes:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Any] = {}
        self.pending: dict[uuid.UUID, Any] = {}

    async def record(self, command_id: uuid.UUID, outcome_type: str, event: dict[str, Any]) -> None:
        self.rows.setdefault(command_id, SimpleNamespace(outcome_type=outcome_type, event=event))
        self.pending.pop(command_id, None)

    async def expect(self, command_id: uuid.UUID, command_type: str, awaiting: str, within_s: float) -> None:
        self.pending.setdefault(
            command_id, SimpleNamespace(command_type=command_type, awaiting=awaiting, within_s=within_s)
        )

    async def get(self, command_id: uuid.UUID) -> Any:
        return self.rows.get(command_id)


class FakeUnitOfWork:
    """Commits are counted; leaving without commit discards nothing (tests assert on commits)."""

    def __init__(self) -> None:
        self.models = FakeModels()
        self.configurations = FakeConfigurations(self.models)
        self.deployments = FakeDeployments()
        self.training = FakeTraining()
        self.datasources = FakeDatasources()
        self.inferences = FakeInferences()
        self.processed = FakeProcessed()
        self.outcomes = FakeOutcomes()
        self.versions = FakeVersions()
        self.commits = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def commit(self) -> None:
        self.commits += 1

    async def rollback(self) -> None:
        return None


# --- job specs: one literal each, what a test changes given by keyword ----------------------------


def job_spec(
    job_id: str = "job-1",
    *results: int,
    framework: str = "tensorflow",
    gpus: int = 0,
    code: str = "model = build()",
    **fields: Any,
) -> JobSpec:
    """A training's spec with one model per result id (default: result 1)."""
    models = [
        JobModel(result_id=r, model_id=r, name=f"model-{r}", code=code, upper_model_id=None) for r in results or (1,)
    ]
    values: dict[str, Any] = {
        "job_id": job_id, "deployment_id": 42, "framework": framework, "models": models, "batch_size": 32,
        "fit": {"epochs": 3}, "evaluate": {}, "confusion_matrix": True, "gpus": gpus,
    }  # fmt: skip
    return JobSpec.model_validate({**values, **fields})


def serve_spec(job_id: str = "inference-1", **fields: Any) -> ServeSpec:
    """An inference's spec: one replica, RAW input; what ``fields`` names overrides."""
    values: dict[str, Any] = {
        "job_id": job_id, "inference_id": 1, "result_id": 1, "framework": "tensorflow", "code": "",
        "artifact_sha256": "0" * 64, "artifact_format": "keras", "input_topic": "in", "output_topic": "out",
        "input_format": "RAW", "input_config": {}, "group_id": "g",
    }  # fmt: skip
    return ServeSpec.model_validate({**values, **fields})
