"""The orchestrator: owns the catalog, reacts to commands and workload events, launches workloads.

Records are handled one at a time: decode, route to the handler by message
class inside one transaction (``handle_once``), publish the answers, then run
the effects outside the database (launch, stop, announce).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, TypeVar

from pydantic import ValidationError

from services.orchestrator.handlers import make_router
from services.orchestrator.launchers import Launcher, make_launcher
from services.orchestrator.training import JobDefaults
from shared.artifacts import chunk_artifact
from shared.control import key_for_deployment
from shared.db.uow import SqlUnitOfWork
from shared.errors import Rejected, Undecodable
from shared.events import (
    Command,
    CommandRejected,
    DatasourceSent,
    Envelope,
    Failure,
    InferenceDeleted,
    InferenceStatusChange,
    InferenceStatusChanged,
    InferenceStopped,
    JobSpec,
    ServeModel,
    ServeSpec,
    SwitchModelVersion,
    TrainingFailed,
    TrainingStopped,
    TrainJob,
)
from shared.events.signing import Forged, Signs, inference_signer
from shared.faust_app import Service
from shared.handling import handle_once
from shared.kafka import Received, create_topics, existing_topics
from shared.process import every
from shared.routing import rejection, rejection_payload
from shared.settings import Settings
from shared.topics import TopicSpec

log = logging.getLogger("kafkaml.orchestrator")

# How often commands past their deadline are looked for.
REAP_EVERY_S = 5.0


class Orchestrator(Service):
    """The producer, the database and the launcher, started once."""

    name = "orchestrator"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.launcher: Launcher = make_launcher(settings, self.report_failure)
        self.router = make_router(
            JobDefaults.of(settings, self.keyring), self.topics, answer_within_s=settings.command_deadline_s
        )
        self._reaper: asyncio.Task[None] | None = None

    def inbox(self) -> list[str]:
        return [self.topics.commands, self.topics.events]

    async def on_start(self) -> None:
        await self.reconcile()
        # A validator that is down, or an answer lost, must not leave a command pending for ever.
        self._reaper = asyncio.create_task(
            every(REAP_EVERY_S, self.end_overdue_commands, what="ending overdue commands")
        )
        log.info("orchestrator ready: consuming %s and %s", self.topics.commands, self.topics.events)

    async def process(self, received: Received) -> None:
        # Undecodable or Forged: ``deliver`` dead-letters it with the reason.
        message = self.keyring.open(received.value, received.headers, self.router.handles)
        if message is None:
            return  # another service's event
        outgoing = await handle_once(message, self.router, uow=SqlUnitOfWork(self.sessions), consumer=self.name)
        # Job specs carry secrets: the launcher hands them to their worker, no topic carries them.
        # A version switch follows its version's chunks (``after_commit``).
        await self.publish([a for a in outgoing if not isinstance(a, (TrainJob, ServeModel, SwitchModelVersion))])
        for answer in outgoing:
            await self.after_commit(answer)
        log.info("%s %s → %s", message.type, message.event_id, ", ".join(a.type for a in outgoing) or "nothing")

    async def dead_lettered(self, received: Received, reason: str) -> None:
        """A command, or a message answering one, could not be processed: the command ends
        rejected with that reason instead of staying pending for ever (unless it already ended)."""
        try:
            message = self.keyring.open(received.value, received.headers)
        except (Undecodable, Forged):
            return  # nothing says which command it was, or a forger named one: it ends nothing
        command_id = message.event_id if isinstance(message, Command) else message.correlation_id
        if command_id is None:
            return
        refusal = Rejected(500, f"{message.type} could not be processed, so the command ended: {reason}")
        answer = rejection(message, refusal)  # tied to command_id: a command's own id, or what an event answers
        async with SqlUnitOfWork(self.sessions) as uow:
            if await uow.outcomes.get(command_id) is not None:
                return
            await uow.outcomes.record(command_id, answer.type, answer.model_dump(mode="json"))
            await uow.commit()
        await self.publish([answer])
        log.warning("command %s ended: %s", command_id, refusal.detail)

    async def end_overdue_commands(self) -> None:
        """Ends the commands whose awaited answer did not come by their deadline (rejected, 504)."""
        answers: list[Envelope] = []
        async with SqlUnitOfWork(self.sessions) as uow:
            for pending in await uow.outcomes.overdue():
                detail = (
                    f"no answer from the {pending.awaiting} in time, so the command ended; "
                    f"check that the {pending.awaiting} runs (`kafkaml status`) and try again"
                )
                refusal = Rejected(504, detail, command_type=pending.command_type)
                answer = CommandRejected(correlation_id=pending.command_id, payload=rejection_payload(refusal))
                await uow.outcomes.record(pending.command_id, answer.type, answer.model_dump(mode="json"))
                answers.append(answer)
                log.warning("command %s (%s) ended: %s", pending.command_id, pending.command_type, detail)
            await uow.commit()
        await self.publish(answers)

    async def after_commit(self, answer: Envelope) -> None:
        """Effects outside the database, run once the answer is committed and published
        (and again on a redelivery: each is idempotent)."""
        if isinstance(answer, (TrainJob, ServeModel)):
            spec = answer.payload
            try:
                if isinstance(spec, JobSpec):
                    await self.launcher.launch_training(spec)
                else:
                    await self.serve(spec)
            except Exception as exc:
                log.exception("could not launch job %s", spec.job_id)
                await self.report_failure(spec, f"could not launch the workload: {type(exc).__name__}: {exc}")
        elif isinstance(answer, (TrainingStopped, InferenceStopped, InferenceDeleted)) and answer.payload.job_id:
            await self.launcher.stop(answer.payload.job_id)
        elif isinstance(answer, SwitchModelVersion):
            await self.switch(answer)
        elif isinstance(answer, DatasourceSent):
            sent = answer.payload
            await self.producer.send(
                self.settings.control_topic,
                json.dumps(sent.control_message).encode(),
                key=key_for_deployment(sent.deployment_id),
            )

    async def reconcile(self) -> None:
        """After a restart: what the database says is in flight runs, and nothing else."""
        async with SqlUnitOfWork(self.sessions) as uow:
            jobs = stored_specs(JobSpec, {str(job.id): job.spec for job in await uow.training.active_jobs()})
            serves = stored_specs(ServeSpec, {str(i.job_id): i.spec for i in await uow.inferences.active()})
        missing = await self.launcher.reconcile([*jobs, *serves])
        broker_topics = await existing_topics(self.settings) if missing else set()
        for job_id in sorted(missing):
            if job_id in jobs and (gone := await self.data_gone(jobs[job_id], broker_topics)):
                log.warning("reconcile: training job %s is not relaunched: %s", job_id, gone)
                await self.report_failure(jobs[job_id], gone)
            elif job_id in jobs:
                log.info("reconcile: training job %s is not running; launching it", job_id)
                await self.launcher.launch_training(jobs[job_id])
            else:
                log.info("reconcile: inference %d is not running; launching it", serves[job_id].inference_id)
                await self.serve(serves[job_id])

    async def data_gone(self, spec: JobSpec, broker_topics: set[str]) -> str | None:
        """Why the job cannot have its data any more (the topics its deployment's data sources
        named are gone from the broker), or None (no data announced yet, or some still there)."""
        async with SqlUnitOfWork(self.sessions) as uow:
            announced = [row.topic for row in await uow.datasources.of_deployment(spec.deployment_id)]
        named = [{part.split(":")[0] for part in topic.split(",")} for topic in announced]
        if not named or any(topics <= broker_topics for topics in named):
            return None
        lost = ", ".join(sorted(set().union(*named) - broker_topics))
        return (
            f"the data announced for deployment {spec.deployment_id} is gone: the broker no longer has "
            f"topic(s) {lost} (an embedded broker keeps topics in memory, so `kafkaml down` lost them); "
            "send the data again and deploy the configuration again"
        )

    async def report_failure(self, spec: JobSpec | ServeSpec, reason: str) -> None:
        """A job ended without reporting: its results (or its inference) fail with the reason."""
        if isinstance(spec, ServeSpec):
            change = InferenceStatusChange(inference_id=spec.inference_id, status="failed", error=reason)
            await self.producer.publish(InferenceStatusChanged(payload=change))
            return
        for model in spec.models:
            failure = Failure(result_id=model.result_id, deployment_id=spec.deployment_id, error=reason)
            await self.producer.publish(TrainingFailed(payload=failure))

    def signer_for(self, answer: Envelope) -> Signs | None:
        """A version switch is signed with its inference's key: its replicas hold only that one."""
        if isinstance(answer, SwitchModelVersion) and answer.payload.job_id:
            return self.keyring.key(inference_signer(answer.payload.job_id, answer.payload.inference_id))
        return None

    async def send_version(self, result_id: int, version: int) -> bool:
        """Publishes the stored version's chunks on the artifacts topic (again); False when it is gone."""
        async with SqlUnitOfWork(self.sessions) as uow:
            stored = await uow.versions.get(result_id, version)
            # Read inside the block: leaving it rolls back, which expires the row.
            data = stored.data if stored is not None else None
        if data is None:
            return False
        for chunk in chunk_artifact(result_id, data):
            chunk.payload.version = version
            await self.producer.publish(chunk)
        return True

    async def switch(self, answer: SwitchModelVersion) -> None:
        """The version's chunks, then the switch its inference's replicas obey."""
        switch = answer.payload
        if not await self.send_version(switch.result_id, switch.version):
            log.warning(
                "inference %d: version %d of result %d is gone", switch.inference_id, switch.version, switch.result_id
            )
            return
        await self.publish([answer])

    async def serve(self, spec: ServeSpec) -> None:
        """Everything an inference's replicas need, then the replicas: the model on the artifacts
        topic, an input topic with enough partitions for the replicas to share it, and the
        output (and upper) topics if missing. Only the input topic, the inference's own, is ever
        grown: the others may be read by anyone, and growing one moves its keys' partitions."""
        if not await self.send_version(spec.result_id, spec.model_version):
            await self.report_failure(spec, f"version {spec.model_version} of result {spec.result_id} is gone")
            return
        await ensure_inference_topics(self.settings, spec)
        await self.launcher.launch_inference(spec)


async def ensure_inference_topics(settings: Settings, spec: ServeSpec) -> None:
    """The input topic with a partition per replica (grown if it has fewer); the output and
    upper topics created if missing, never grown."""
    await create_topics(settings, [TopicSpec(spec.input_topic, partitions=max(spec.replicas, 1))], grow=True)
    outputs = [TopicSpec(spec.output_topic, 1)]
    if spec.upper_topic:
        outputs.append(TopicSpec(spec.upper_topic, partitions=1))
    await create_topics(settings, outputs)


S = TypeVar("S", JobSpec, ServeSpec)


def stored_specs(kind: type[S], rows: dict[str, dict[str, Any]]) -> dict[str, S]:
    """The specs of in-flight jobs; one that no longer reads (written by another version) is
    logged and left alone rather than stopping the orchestrator."""
    specs: dict[str, S] = {}
    for job_id, spec in rows.items():
        try:
            specs[job_id] = kind.model_validate(spec)
        except ValidationError as exc:
            log.error("reconcile: job %s has an unreadable %s, not relaunched: %s", job_id, kind.__name__, exc)
    return specs
