"""The spool launcher: the orchestrator hands job specs to a runner through a shared folder.

In containers (docker-compose.yml) the orchestrator holds the database URL and the bus key,
so user code must not run as its child. It writes each job's spec into a folder it shares
with the *runner* (``services.orchestrator.launchers.spool_runner``), a process with no
credential that starts and stops the workers with the local launcher. Neither calls the
other: each writes files the other polls, so either may restart while the other runs.

The folder (``KAFKAML_SPOOL_DIR``, default ``$KAFKAML_HOME/spool``; mode 0700, files 0600):

* ``<job>.spec``: orchestrator to runner, a job to start (``{"kind", "spec"}``). The runner
  takes it: moves it to ``taken/``, which lists the jobs it runs.
* ``<job>.stop``: orchestrator to runner, stop that job (and forget its pending spec).
* ``<job>.failed``: runner to orchestrator, a job that ended without reporting
  (``{"kind", "spec", "reason"}``); the orchestrator reports it and removes the file.

A file appears whole or not at all: each is written beside its name, then renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from services.orchestrator.launchers.base import OnFailure
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.process import every
from shared.settings import Settings

log = logging.getLogger("kafkaml.launcher.spool")

Spec = JobSpec | ServeSpec
KINDS: dict[str, type[JobSpec] | type[ServeSpec]] = {"training": JobSpec, "inference": ServeSpec}


def spool_dir(settings: Settings) -> Path:
    return settings.spool_dir if settings.spool_dir is not None else Path(settings.home) / "spool"


def prepare(folder: Path) -> Path:
    """The spool and its ``taken/`` folder, owner-only (they hold job keys)."""
    (folder / "taken").mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    (folder / "taken").chmod(0o700)
    return folder


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """``data`` as JSON at ``path``, mode 0600, seen whole or not at all."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    partial.replace(path)


def encode(spec: Spec, **extra: str) -> dict[str, Any]:
    kind = "training" if isinstance(spec, JobSpec) else "inference"
    return {"kind": kind, "spec": spec.model_dump(mode="json"), **extra}


def decode(data: Any) -> Spec:
    """The spec in a spool file (parsed JSON); ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"a spool file holds an object, not {type(data).__name__}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is neither training nor inference")
    return KINDS[kind].model_validate(data.get("spec"))


def job_ids(folder: Path, suffix: str) -> set[str]:
    return {path.name.removesuffix(suffix) for path in folder.glob(f"*{suffix}")} if folder.exists() else set()


class SpoolLauncher:
    """The orchestrator's side: writes specs and stops, reads failures (``poll_s`` apart)."""

    def __init__(self, settings: Settings, on_failure: OnFailure, *, poll_s: float = 0.5) -> None:
        self.folder = spool_dir(settings)
        self.on_failure = on_failure
        self.poll_s = poll_s
        self._poller: asyncio.Task[None] | None = None

    def _start_polling(self) -> None:
        prepare(self.folder)
        if self._poller is None:
            self._poller = asyncio.create_task(
                every(self.poll_s, self.report_failures, what="reading the runner's failures"), name="spool-failures"
            )

    async def _hand(self, spec: Spec) -> None:
        self._start_polling()
        if spec.job_id in await self.running():
            return
        (self.folder / f"{spec.job_id}.stop").unlink(missing_ok=True)  # a stop of an earlier run is void
        write_atomically(self.folder / f"{spec.job_id}.spec", encode(spec))
        log.info("handed job %s to the runner (%s)", spec.job_id, self.folder)

    async def launch_training(self, spec: JobSpec) -> None:
        await self._hand(spec)

    async def launch_inference(self, spec: ServeSpec) -> None:
        await self._hand(spec)

    async def stop(self, job_id: str) -> None:
        self._start_polling()
        pending = self.folder / f"{job_id}.spec"
        if pending.exists():
            pending.unlink(missing_ok=True)  # not taken yet: nothing started
        if (self.folder / "taken" / f"{job_id}.spec").exists():
            write_atomically(self.folder / f"{job_id}.stop", {"job_id": job_id})

    async def running(self) -> set[str]:
        """Handed over and not ended: pending, or taken by the runner."""
        return (job_ids(self.folder, ".spec") | job_ids(self.folder / "taken", ".spec")) - job_ids(self.folder, ".stop")

    async def reconcile(self, wanted: Iterable[str]) -> set[str]:
        self._start_polling()
        wanted = set(wanted)
        running = await self.running()
        for job_id in sorted(running - wanted):
            log.info("reconcile: %s runs but is no longer wanted; stopping it", job_id)
            await self.stop(job_id)
        return wanted - running

    async def report_failures(self) -> None:
        """Each ``<job>.failed`` the runner wrote: reported, then removed."""
        for path in sorted(self.folder.glob("*.failed")):
            try:
                data = json.loads(path.read_text())
                spec, reason = decode(data), str(data.get("reason", "the worker ended"))
            except (OSError, ValueError) as exc:
                log.warning("spool: %s is unreadable (%s); removed", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            await self.on_failure(spec, reason)
            path.unlink(missing_ok=True)

    async def close(self) -> None:
        """Stops polling; the runner's workers go on (they are the runner's, not ours)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
