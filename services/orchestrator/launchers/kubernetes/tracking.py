"""What runs, as the watch sees it: one :class:`Workload` per job, and the failures to report.

Observing is synchronous and only queues what must be done (reports, deletions); the
launcher acts on the queues right after (``KubernetesLauncher._flush``), so that one
object's events are handled in the order they came.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from services.orchestrator.launchers.kubernetes.api import Kind
from services.orchestrator.launchers.kubernetes.labels import COMPONENT, SPEC, TRAINER, Manifest
from services.orchestrator.launchers.kubernetes.status import (
    FATAL_WAITING,
    describe_pod_problem,
    job_id_of,
    metadata_of,
    true_condition,
)
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec

log = logging.getLogger("kafkaml.launcher.kubernetes")


@dataclass
class Workload:
    job_id: str
    kind: Literal["training", "inference"]
    name: str
    spec: JobSpec | ServeSpec
    state: Literal["running", "succeeded", "failed", "deleting"] = "running"
    stopping: bool = False
    reported: set[str] = field(default_factory=set)
    note: str | None = None
    # When this launcher learnt of it: a list that started earlier cannot have seen it.
    known_since: float = field(default_factory=time.monotonic)


class WorkloadTracker:
    """The workloads of one orchestrator, updated from the objects the watch sees."""

    def __init__(self, progress_deadline_s: int) -> None:
        self.progress_deadline_s = progress_deadline_s
        self.workloads: dict[str, Workload] = {}
        # Found while observing, acted on by the launcher's flush.
        self.pending_reports: list[tuple[Workload, str]] = []
        self.pending_deleted: list[Workload] = []
        self.pending_deletes: list[Workload] = []
        self.pending_job_failures: list[tuple[Workload, Manifest]] = []

    def listed(self, kind: Kind, items: list[Manifest], started: float) -> None:
        """A full list of ``kind``: every object observed, and what it lacks counted as deleted."""
        seen: set[str] = set()
        for item in items:
            self.observe(kind, "ADDED", item)
            job_id = job_id_of(item)
            if job_id:
                seen.add(job_id)
        if kind == "pod":
            return
        # What vanished while we were not watching was deleted.
        mine = "training" if kind == "job" else "inference"
        for job_id, workload in list(self.workloads.items()):
            if workload.kind == mine and job_id not in seen and workload.known_since < started:
                self.pending_deleted.append(workload)

    def observe(self, kind: Kind, event: str, obj: Manifest) -> None:
        """Updates the state from one object; what must be reported or deleted is queued."""
        job_id = job_id_of(obj)
        if job_id is None:
            return
        if kind == "pod":
            self._observe_pod(job_id, event, obj)
            return
        workload = self.workloads.get(job_id)
        if workload is None:
            workload = self._adopt(kind, job_id, obj)
            if workload is None:
                return
        if event == "DELETED":
            self.pending_deleted.append(workload)
            return
        if metadata_of(obj).get("deletionTimestamp"):
            workload.state = "deleting"
        elif kind == "job":
            if true_condition(obj, "Complete") or true_condition(obj, "SuccessCriteriaMet"):
                workload.state = "succeeded"
            elif true_condition(obj, "Failed") or true_condition(obj, "FailureTarget"):
                workload.state = "failed"
                if not workload.stopping and not workload.reported:
                    workload.reported.add("job-failed")
                    self.pending_job_failures.append((workload, obj))
            else:
                workload.state = "running"
        else:
            workload.state = "running"
            progressing = next(
                (c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Progressing"), None
            )
            if progressing and progressing.get("reason") == "ProgressDeadlineExceeded" and not workload.stopping:
                reason = f"the inference's replicas did not become ready within {self.progress_deadline_s} s"
                if workload.note:
                    reason += f": {workload.note}"
                self.queue(workload, "deadline", reason)

    def queue(self, workload: Workload, key: str, reason: str) -> None:
        """Queues a failure report: one per training job, one per kind of problem for an inference."""
        if (workload.kind == "training" and workload.reported) or key in workload.reported:
            return
        workload.reported.add(key)
        self.pending_reports.append((workload, reason))

    def _observe_pod(self, job_id: str, event: str, pod: Manifest) -> None:
        workload = self.workloads.get(job_id)
        if workload is None or event == "DELETED" or workload.stopping:
            return
        component = (metadata_of(pod).get("labels") or {}).get(COMPONENT, TRAINER)
        problem = describe_pod_problem(pod, component)
        if problem is None:
            return
        workload.note = problem
        waiting = {
            (c.get("state") or {}).get("waiting", {}).get("reason")
            for c in (pod.get("status") or {}).get("containerStatuses") or []
        }
        if waiting & FATAL_WAITING:
            # Waiting longer will not help: fail now (a training's Job is deleted, its result fails).
            self.queue(workload, "cannot-start", problem)
            if workload.kind == "training":
                workload.stopping = True
                self.pending_deletes.append(workload)
        elif workload.kind == "inference" and "CrashLoopBackOff" in waiting:
            self.queue(workload, "crash-loop", problem)

    def _adopt(self, kind: Kind, job_id: str, obj: Manifest) -> Workload | None:
        """A workload found in the cluster (after a restart): its spec comes from its annotation."""
        name = metadata_of(obj).get("name")
        text = (metadata_of(obj).get("annotations") or {}).get(SPEC)
        if not text:
            log.warning("%s %s has no %s annotation; ignored", kind, name, SPEC)
            return None
        try:
            spec: JobSpec | ServeSpec = (
                JobSpec.model_validate_json(text) if kind == "job" else ServeSpec.model_validate_json(text)
            )
        except ValueError as exc:
            log.warning("%s %s: unreadable spec annotation (%s); ignored", kind, name, exc)
            return None
        workload = Workload(job_id, "training" if kind == "job" else "inference", str(name), spec)
        self.workloads[job_id] = workload
        log.info("adopted %s %s of job %s", kind, workload.name, job_id)
        return workload
