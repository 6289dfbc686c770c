"""The resuming watch: one loop per kind that lists, then watches from where it left off.

A watch resumes from the last resource version it saw after a disconnect or the server's
timeout, so no event is lost or seen twice; a ``410 Gone`` (that version was compacted
away) makes it list again, and the listener treats what vanished meanwhile as deleted.
Bookmarks keep the version fresh on quiet namespaces.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from services.orchestrator.launchers.kubernetes.api import Api, Gone, Kind, KubernetesApiError
from services.orchestrator.launchers.kubernetes.labels import Manifest
from services.orchestrator.launchers.kubernetes.status import metadata_of
from shared.process import Backoff

log = logging.getLogger("kafkaml.launcher.kubernetes")

# (kind, the listed objects, when the list started (monotonic))
OnListed = Callable[[Kind, list[Manifest], float], Awaitable[None]]
# (kind, ADDED | MODIFIED | DELETED, the object)
OnEvent = Callable[[Kind, str, Manifest], Awaitable[None]]

# Watch failures (API server restarts, network) retry from one second up to thirty.
WATCH_BACKOFF = Backoff(initial=1.0, maximum=30.0)


class ResumingWatch:
    """Lists and watches the objects of ``kind`` matching ``selector``, handing them to the listener."""

    def __init__(self, api: Api, kind: Kind, selector: str, on_listed: OnListed, on_event: OnEvent) -> None:
        self.api = api
        self.kind = kind
        self.selector = selector
        self.on_listed = on_listed
        self.on_event = on_event
        self.resource_version: str | None = None

    async def relist(self) -> None:
        """Lists every object once (on start, and after ``410 Gone``); watching resumes from there."""
        started = time.monotonic()
        listed = await self.api.list(self.kind, self.selector)
        items = [item for item in listed.get("items") or [] if isinstance(item, dict)]
        await self.on_listed(self.kind, items, started)
        self.resource_version = str((listed.get("metadata") or {}).get("resourceVersion") or "") or None

    async def run_forever(self) -> None:
        """Watches until cancelled, resuming after every interruption."""
        delay = WATCH_BACKOFF.initial
        while True:
            try:
                if self.resource_version is None:
                    await self.relist()
                await self.watch_once()
                delay = WATCH_BACKOFF.initial
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("watch of %ss: resource version %s expired; listing again", self.kind, self.resource_version)
                self.resource_version = None
            except Exception as exc:
                log.warning(
                    "watch of %ss interrupted (%s: %s); resuming in %.0f s", self.kind, type(exc).__name__, exc, delay
                )
                await asyncio.sleep(delay)
                delay = WATCH_BACKOFF.following(delay)

    async def watch_once(self) -> None:
        """One watch request, from the last resource version until the server ends it."""
        response = await self.api.watch(self.kind, self.selector, self.resource_version)
        try:
            if response.status == 410:
                raise Gone
            if not 200 <= response.status < 300:
                body = await response.read()
                raise KubernetesApiError(response.status, response.reason or "", body.decode(errors="replace"))
            while True:
                line = await response.content.readline()
                if not line:
                    return  # the server's timeout: resume from where we are
                if not line.strip():
                    continue
                event = json.loads(line)
                kind_of_event = event.get("type")
                obj = event.get("object") or {}
                if kind_of_event == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone
                    raise KubernetesApiError(int(obj.get("code") or 500), str(obj.get("reason")), json.dumps(obj))
                version = metadata_of(obj).get("resourceVersion")
                if kind_of_event != "BOOKMARK":
                    await self.on_event(self.kind, str(kind_of_event), obj)
                if version:
                    self.resource_version = str(version)
        finally:
            response.release()
