"""The Kubernetes API calls the launcher makes, in raw JSON.

Raw (``_preload_content=False``): what is sent is exactly what the manifest functions built,
and what comes back is read as plain dictionaries. The calls are those the Role in
``deploy/k8s/base/rbac.yaml`` grants: ``create, delete, list, watch`` on Jobs and
Deployments, ``list, watch`` on Pods, in one namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from services.orchestrator.launchers.kubernetes.labels import Manifest
from services.orchestrator.launchers.kubernetes.settings import KubernetesSettings

Kind = Literal["job", "deployment", "pod", "secret"]
Call = Callable[..., Awaitable[Any]]

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubernetesApiError(RuntimeError):
    def __init__(self, status: int, reason: str, body: str = "") -> None:
        self.status = status
        self.reason = reason
        self.body = body
        try:
            detail = json.loads(body).get("message", "") if body else ""
        except (ValueError, AttributeError):
            detail = body[:200]
        super().__init__(f"Kubernetes API answered {status} {reason}" + (f": {detail}" if detail else ""))


class Gone(Exception):
    """The resource version a watch resumes from is too old: list again."""


async def load_api_client(k8s: KubernetesSettings) -> Any:
    """An API client for the pod's service account, or for a kubeconfig (``k8s.config``)."""
    from kubernetes_asyncio import client, config
    from kubernetes_asyncio.config.incluster_config import (
        SERVICE_CERT_FILENAME,
        SERVICE_TOKEN_FILENAME,
        InClusterConfigLoader,
    )

    configuration = client.Configuration()
    in_cluster = k8s.config == "incluster" or (
        k8s.config == "auto" and not k8s.kubeconfig and "KUBERNETES_SERVICE_HOST" in os.environ
    )
    if in_cluster:
        # What config.load_incluster_config does, through the typed loader.
        InClusterConfigLoader(SERVICE_TOKEN_FILENAME, SERVICE_CERT_FILENAME).load_and_set(configuration)
    else:
        await config.load_kube_config(
            config_file=k8s.kubeconfig, context=k8s.context, client_configuration=configuration
        )
    return client.ApiClient(configuration)


def default_namespace() -> str:
    """The pod's own namespace in a cluster, ``default`` outside one."""
    with contextlib.suppress(OSError):
        value = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        if value:
            return value
    return "default"


class Api:
    """List, create, delete and watch Jobs, Deployments and Pods in one namespace."""

    def __init__(self, api_client: Any, namespace: str, k8s: KubernetesSettings) -> None:
        from kubernetes_asyncio import client

        batch = client.BatchV1Api(api_client)
        apps = client.AppsV1Api(api_client)
        core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.k8s = k8s
        self._list: dict[Kind, Call] = {
            "job": batch.list_namespaced_job,
            "deployment": apps.list_namespaced_deployment,
            "pod": core.list_namespaced_pod,
        }
        self._create: dict[Kind, Call] = {
            "job": batch.create_namespaced_job,
            "deployment": apps.create_namespaced_deployment,
            "secret": core.create_namespaced_secret,
        }
        self._delete: dict[Kind, Call] = {
            "job": batch.delete_namespaced_job,
            "deployment": apps.delete_namespaced_deployment,
        }

    async def list(self, kind: Kind, selector: str) -> Manifest:
        return await self._call(self._list[kind], self.namespace, label_selector=selector)

    async def create(self, kind: Kind, manifest: Manifest) -> Manifest:
        return await self._call(self._create[kind], self.namespace, manifest)

    async def delete(self, kind: Kind, name: str) -> bool:
        """Deletes with foreground propagation (the pods go first); False when there was nothing."""
        try:
            await self._call(self._delete[kind], name, self.namespace, propagation_policy="Foreground")
        except KubernetesApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def watch(self, kind: Kind, selector: str, resource_version: str | None) -> Any:
        """The open response of one watch request (JSON lines); the caller reads and releases it."""
        return await self._list[kind](
            self.namespace,
            label_selector=selector,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=resource_version,
            timeout_seconds=self.k8s.watch_timeout_s,
            _preload_content=False,
            _request_timeout=self.k8s.watch_timeout_s + 30,
        )

    async def _call(self, func: Call, *args: Any, **kwargs: Any) -> Manifest:
        response = await func(*args, _preload_content=False, _request_timeout=self.k8s.request_timeout_s, **kwargs)
        try:
            body = await response.read()
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise KubernetesApiError(response.status, response.reason or "", body.decode(errors="replace"))
        data = json.loads(body) if body else {}
        return data if isinstance(data, dict) else {}
