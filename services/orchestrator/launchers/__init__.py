"""Launchers: the one seam between running on one machine and running on Kubernetes."""

from __future__ import annotations

from services.orchestrator.launchers.base import Launcher, OnFailure, worker_env
from services.orchestrator.launchers.local import LocalLauncher

__all__ = ["Launcher", "LocalLauncher", "OnFailure", "worker_env"]
