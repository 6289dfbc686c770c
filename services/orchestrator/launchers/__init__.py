"""Launchers: the one seam between running on one machine and running on Kubernetes."""

from __future__ import annotations

from services.orchestrator.launchers.base import Launcher, OnFailure
from services.orchestrator.launchers.local import LocalLauncher
from shared.settings import Settings


def make_launcher(settings: Settings, on_failure: OnFailure) -> Launcher:
    """The launcher ``KAFKAML_LAUNCHER`` names: ``local`` (processes), ``spool`` (a runner's) or ``kubernetes``."""
    if settings.launcher == "kubernetes":
        # Imported here: kubernetes-asyncio is only needed where it is used.
        from services.orchestrator.launchers.kubernetes import KubernetesLauncher

        return KubernetesLauncher(settings, on_failure)
    if settings.launcher == "spool":
        from services.orchestrator.launchers.spool import SpoolLauncher

        return SpoolLauncher(settings, on_failure)
    if settings.launcher != "local":
        raise ValueError(f"KAFKAML_LAUNCHER={settings.launcher!r}: use local, spool or kubernetes")
    return LocalLauncher(settings, on_failure, memory_mb=settings.trainer_memory_mb)


__all__ = ["Launcher", "LocalLauncher", "OnFailure", "make_launcher"]
