"""The Kubernetes launcher: creates the workloads, watches them, reports what their workers cannot.

A trainer or inferencer reports its own outcome through Kafka; the launcher reports only
what the worker cannot: a Job that failed (killed for memory, evicted, past its deadline,
crashed, deleted by someone else, an image that cannot be pulled) or an inference whose
replicas never start or keep crashing, through ``OnFailure``, with a reason a user can act
on. Stopping deletes with foreground propagation and reports nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Literal

from services.orchestrator.launchers.base import OnFailure
from services.orchestrator.launchers.kubernetes.api import (
    Api,
    Kind,
    KubernetesApiError,
    default_namespace,
    load_api_client,
)
from services.orchestrator.launchers.kubernetes.labels import (
    INFERENCER,
    JOB_ID,
    TRAINER,
    Manifest,
    inference_name,
    label_value,
    selector,
    training_name,
)
from services.orchestrator.launchers.kubernetes.manifests import (
    check_kafka_secret,
    inference_deployment_manifest,
    spec_secret_manifest,
    training_job_manifest,
)
from services.orchestrator.launchers.kubernetes.settings import KubernetesSettings
from services.orchestrator.launchers.kubernetes.status import describe_job_failure, describe_pod_problem, metadata_of
from services.orchestrator.launchers.kubernetes.tracking import Workload, WorkloadTracker
from services.orchestrator.launchers.kubernetes.watch import ResumingWatch
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings

log = logging.getLogger("kafkaml.launcher.kubernetes")

KINDS: tuple[Kind, ...] = ("job", "deployment", "pod")


class KubernetesLauncher:
    """The :class:`~services.orchestrator.launchers.base.Launcher` for Kubernetes."""

    def __init__(
        self,
        settings: Settings,
        on_failure: OnFailure,
        *,
        k8s: KubernetesSettings | None = None,
        api_client: Any = None,
    ) -> None:
        self.settings = settings
        self.on_failure = on_failure
        self.k8s = k8s or KubernetesSettings()
        check_kafka_secret(settings, self.k8s)  # now, not at the first launch
        self._client = api_client
        self._owns_client = api_client is None
        self.tracker = WorkloadTracker(self.k8s.progress_deadline_s)
        self.selector = selector(settings)
        self._api: Api | None = None
        self._watches: list[ResumingWatch] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        self._ready = False

    @property
    def workloads(self) -> dict[str, Workload]:
        return self.tracker.workloads

    # --- the Launcher interface ---

    async def launch_training(self, spec: JobSpec) -> None:
        api = await self._started()
        if self._runs(spec.job_id):
            return
        await self._create(api, "job", training_job_manifest(spec, self.settings, self.k8s), spec, "training")

    async def launch_inference(self, spec: ServeSpec) -> None:
        api = await self._started()
        if self._runs(spec.job_id):
            return
        manifest = inference_deployment_manifest(spec, self.settings, self.k8s)
        await self._create(api, "deployment", manifest, spec, "inference")

    async def stop(self, job_id: str) -> None:
        api = await self._started()
        workload = self.workloads.get(job_id)
        if workload is not None:
            workload.stopping = True
            kinds: list[Kind] = ["job" if workload.kind == "training" else "deployment"]
            names = {"job": workload.name, "deployment": workload.name}
        else:
            kinds = ["job", "deployment"]
            names = {"job": training_name(job_id), "deployment": inference_name(job_id)}
        for kind in kinds:
            if await api.delete(kind, names[kind]):
                log.info("stopping %s: deleted %s %s (foreground propagation)", job_id, kind, names[kind])
        if workload is not None and workload.state == "running":
            workload.state = "deleting"

    async def running(self) -> set[str]:
        await self._started()
        return {job_id for job_id, w in self.workloads.items() if w.state == "running" and not w.stopping}

    async def reconcile(self, wanted: Iterable[str]) -> set[str]:
        """Deletes the running workloads whose job id is not in ``wanted`` (the database's
        in-flight jobs and inferences); returns the wanted ids that do not run."""
        wanted = set(wanted)
        running = await self.running()
        for job_id in sorted(running - wanted):
            log.info("reconcile: %s runs but is no longer wanted; deleting it", job_id)
            await self.stop(job_id)
        return wanted - running

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._owns_client and self._client is not None:
            await self._client.close()
            self._client = None

    # --- start-up ---

    async def _started(self) -> Api:
        """The API, once the first list of every kind is in (so that running() is right from the start)."""
        if self._ready and self._api is not None:
            return self._api
        async with self._start_lock:
            if self._ready and self._api is not None:
                return self._api
            if self._client is None:
                self._client = await load_api_client(self.k8s)
            if not self.k8s.namespace:
                self.k8s = self.k8s.model_copy(update={"namespace": default_namespace()})
            # Set before the first lists: what they find may need deleting or its pods listing.
            self._api = api = Api(self._client, self.k8s.namespace or "default", self.k8s)
            self._watches = [ResumingWatch(api, kind, self.selector, self._on_listed, self._on_event) for kind in KINDS]
            for watch in self._watches:
                await watch.relist()
            self._tasks = [
                asyncio.create_task(watch.run_forever(), name=f"k8s-watch-{watch.kind}") for watch in self._watches
            ]
            self._ready = True
            log.info(
                "kubernetes launcher watching namespace %s (%s): %d workloads adopted",
                api.namespace,
                self.selector,
                len(self.workloads),
            )
            return api

    # --- creating ---

    def _runs(self, job_id: str) -> bool:
        current = self.workloads.get(job_id)
        return current is not None and current.state == "running" and not current.stopping

    async def _create(
        self,
        api: Api,
        kind: Kind,
        manifest: Manifest,
        spec: JobSpec | ServeSpec,
        what: Literal["training", "inference"],
    ) -> None:
        name = manifest["metadata"]["name"]
        try:
            created = await api.create(kind, manifest)
        except KubernetesApiError as exc:
            if exc.status != 409:
                raise
            # A Job that finished or failed while we were away, or one being deleted: its outcome
            # is (being) reported; a new one with the same id is not what anyone wants.
            log.warning("%s %s exists already; not created again", kind, name)
            existing = self.workloads.get(spec.job_id)
            if existing is not None:
                existing.spec = spec
            return
        self.workloads[spec.job_id] = Workload(spec.job_id, what, name, spec)
        self.tracker.observe(kind, "ADDED", created)
        log.info("created %s %s for job %s", kind, name, spec.job_id)
        # Its pods wait for their spec's Secret (the kubelet retries the mount): created once its
        # owner exists, so that the owner's deletion takes it along.
        try:
            await api.create("secret", spec_secret_manifest(spec, created, self.k8s))
        except KubernetesApiError as exc:
            if exc.status != 409:
                raise
        await self._flush()

    # --- what the watches see, and the reports that follow ---

    async def _on_listed(self, kind: Kind, items: list[Manifest], started: float) -> None:
        self.tracker.listed(kind, items, started)
        await self._flush()

    async def _on_event(self, kind: Kind, event: str, obj: Manifest) -> None:
        self.tracker.observe(kind, event, obj)
        await self._flush()

    async def _flush(self) -> None:
        """Acts on what observing queued: deletions seen, deletions to make, failures to report."""
        tracker = self.tracker
        while tracker.pending_deleted:
            await self._deleted(tracker.pending_deleted.pop(0))
        while tracker.pending_deletes:
            workload = tracker.pending_deletes.pop(0)
            if self._api is not None:
                with contextlib.suppress(KubernetesApiError):
                    await self._api.delete("job" if workload.kind == "training" else "deployment", workload.name)
        while tracker.pending_job_failures:
            workload, job = tracker.pending_job_failures.pop(0)
            # The pod's story may not have reached the pod watch yet: ask for it.
            note = await self._pods_problem(workload) or workload.note
            await self._report(workload, describe_job_failure(job, note))
        while tracker.pending_reports:
            workload, reason = tracker.pending_reports.pop(0)
            await self._report(workload, reason)

    async def _deleted(self, workload: Workload) -> None:
        self.workloads.pop(workload.job_id, None)
        if workload.stopping or workload.state in ("succeeded", "failed") or workload.reported:
            return
        what = "Job" if workload.kind == "training" else "Deployment"
        reason = f"its Kubernetes {what} {workload.name} was deleted outside Kafka-ML before it finished"
        if workload.note:
            reason += f"; last seen: {workload.note}"
        workload.reported.add("deleted")
        await self._report(workload, reason)

    async def _pods_problem(self, workload: Workload) -> str | None:
        """What the workload's pods say went wrong (the last pod with a problem)."""
        if self._api is None:
            return None
        try:
            listed = await self._api.list("pod", f"{self.selector},{JOB_ID}={label_value(workload.job_id)}")
        except (KubernetesApiError, OSError, TimeoutError) as exc:
            log.warning("could not list the pods of job %s: %s", workload.job_id, exc)
            return None
        component = TRAINER if workload.kind == "training" else INFERENCER
        pods = sorted(
            (p for p in listed.get("items") or [] if isinstance(p, dict)),
            key=lambda p: str(metadata_of(p).get("creationTimestamp") or ""),
        )
        problems = [problem for pod in pods if (problem := describe_pod_problem(pod, component))]
        return problems[-1] if problems else None

    async def _report(self, workload: Workload, reason: str) -> None:
        log.warning("job %s failed: %s", workload.job_id, reason)
        try:
            await self.on_failure(workload.spec, reason)
        except Exception:
            log.exception("reporting the failure of job %s failed", workload.job_id)
