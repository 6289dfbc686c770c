"""Contract test of the Kubernetes launcher against a local fake of the Kubernetes API.

No cluster can run here, so this is a *contract test*: :class:`FakeKubernetes` is
a local aiohttp server that answers the calls the launcher makes (create, list,
watch and delete of Jobs and Deployments; list and watch of Pods) the way the
Kubernetes API server does: the same paths and query parameters, resource
versions on every change, JSON-lines watch streams with bookmarks, ``410
Expired`` for a compacted resource version (inside the stream, as the API server
sends it, or as an HTTP status), ``409 AlreadyExists``, ``404 NotFound`` and
``Status`` bodies, deletion with ``propagationPolicy`` (foreground deletion sets
``deletionTimestamp`` first and removes the dependents' pods). Every object the
launcher creates is validated, strictly, against the official Kubernetes 1.30
schemas (kubernetes-validate), and every call it makes is checked against the
Role in ``deploy/k8s/base/rbac.yaml``. The controllers' part (pods failing,
conditions appearing) is played by the test.

What it covers: deploy (a Job per training, a Deployment per inference,
idempotent), the watch (pod and Job states to failure reports with readable
reasons, resuming from the last resource version after a disconnect, listing
again after ``410 Gone``), stop (delete with foreground propagation, no report),
and reconcile after an orchestrator restart (adoption without re-creation, a
failure that happened while it was down, orphans deleted, missing ones
launched).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from aiohttp import web
from kubernetes_asyncio import client

from services.orchestrator.launchers.kubernetes import (
    JOB_ID,
    KubernetesLauncher,
    KubernetesSettings,
    inference_name,
    training_name,
)
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings
from tests.unit import fakes
from tests.unit.fakes import job_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[3]
K8S_VERSION = "1.30.0"
NAMESPACE = "kafkaml"

# (URL prefix, resource) → (apiGroup, kind)
RESOURCES: dict[tuple[str, str], tuple[str, str]] = {
    ("/apis/batch/v1", "jobs"): ("batch", "Job"),
    ("/apis/apps/v1", "deployments"): ("apps", "Deployment"),
    ("/api/v1", "pods"): ("", "Pod"),
    ("/api/v1", "secrets"): ("", "Secret"),
}
_END = object()


def _status(code: int, reason: str, message: str) -> web.Response:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    body.update(reason=reason, code=code)
    return web.json_response(body, status=code)


def _matches(labels: dict[str, str], label_selector: str) -> bool:
    for term in filter(None, label_selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeKubernetes:
    """The part of the Kubernetes API the launcher uses, in memory."""

    def __init__(self) -> None:
        self.version = itertools.count(1000)
        self.rv = 999
        self.objects: dict[str, dict[str, dict[str, Any]]] = {resource: {} for _, resource in RESOURCES}
        self.log: dict[str, list[tuple[int, str, dict[str, Any]]]] = {resource: [] for _, resource in RESOURCES}
        self.compacted = 0
        self.gone_as_http = False
        self.calls: list[tuple[str, str, str, dict[str, str]]] = []  # (verb, apiGroup, resource, query)
        self.watchers: list[tuple[str, str, asyncio.Queue[Any]]] = []
        self.invalid: list[str] = []
        self.url = ""

    # --- the server ---

    def app(self) -> web.Application:
        app = web.Application()
        for prefix, resource in RESOURCES:
            collection = f"{prefix}/namespaces/{{namespace}}/{resource}"
            app.router.add_get(collection, self._get(prefix, resource))
            app.router.add_post(collection, self._create(prefix, resource))
            app.router.add_delete(collection + "/{name}", self._delete(prefix, resource))
        return app

    def _record(self, verb: str, prefix: str, resource: str, request: web.Request) -> None:
        group = RESOURCES[(prefix, resource)][0]
        self.calls.append((verb, group, resource, dict(request.query)))

    def _get(self, prefix: str, resource: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            watching = request.query.get("watch") in ("true", "1", "True")
            self._record("watch" if watching else "list", prefix, resource, request)
            selector = request.query.get("labelSelector", "")
            if not watching:
                kind = RESOURCES[(prefix, resource)][1]
                items = [
                    o for o in self.objects[resource].values() if _matches(o["metadata"].get("labels", {}), selector)
                ]
                return web.json_response(
                    {
                        "kind": f"{kind}List",
                        "apiVersion": prefix.removeprefix("/apis/").removeprefix("/api/"),
                        "metadata": {"resourceVersion": str(self.rv)},
                        "items": items,
                    }
                )
            return await self._watch(request, resource, selector)

        return handler

    async def _watch(self, request: web.Request, resource: str, selector: str) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or 0)
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        if since and since < self.compacted and self.gone_as_http:
            return _status(410, "Expired", f"too old resource version: {since} ({self.compacted})")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(event: dict[str, Any]) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        if since and since < self.compacted:
            status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
            status.update(message=f"too old resource version: {since} ({self.compacted})", reason="Expired", code=410)
            await send({"type": "ERROR", "object": status})
            return response
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for rv, kind, obj in self.log[resource]:
            if rv > since and _matches(obj["metadata"].get("labels", {}), selector):
                queue.put_nowait((kind, obj))
        entry = (resource, selector, queue)
        self.watchers.append(entry)
        try:
            if request.query.get("allowWatchBookmarks") == "true":
                bookmark = {"kind": "Bookmark", "metadata": {"resourceVersion": str(self.rv)}}
                queue.put_nowait(("BOOKMARK", bookmark))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    break
                if item is _END:
                    break
                await send({"type": item[0], "object": item[1]})
        finally:
            self.watchers.remove(entry)
        return response

    def _create(self, prefix: str, resource: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            self._record("create", prefix, resource, request)
            body = await request.json()
            name = body["metadata"]["name"]
            try:
                kubernetes_validate.validate(body, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                self.invalid.append(f"{name}: {exc}")
                return _status(422, "Invalid", f"{name} is invalid: {exc}")
            if name in self.objects[resource]:
                return _status(409, "AlreadyExists", f'{resource} "{name}" already exists')
            body["metadata"].update(
                namespace=request.match_info["namespace"],
                uid=f"uid-{name}",
                creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                generation=1,
            )
            body["status"] = {}
            self.put(resource, body, "ADDED")
            return web.json_response(body, status=201)

        return handler

    def _delete(self, prefix: str, resource: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            self._record("delete", prefix, resource, request)
            name = request.match_info["name"]
            obj = self.objects[resource].get(name)
            if obj is None:
                return _status(404, "NotFound", f'{resource} "{name}" not found')
            policy = request.query.get("propagationPolicy", "Background")
            if policy == "Foreground":
                # The object stays, marked, until the garbage collector removed its dependents.
                obj["metadata"]["deletionTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                obj["metadata"]["finalizers"] = ["foregroundDeletion"]
                self.put(resource, obj, "MODIFIED")
                asyncio.get_running_loop().call_later(0.05, self.remove, resource, name, True)
            else:
                self.remove(resource, name, True)
            return web.json_response(obj)

        return handler

    # --- what the controllers and the users do ---

    def put(self, resource: str, obj: dict[str, Any], kind: str = "MODIFIED") -> None:
        self.rv = next(self.version)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[resource][obj["metadata"]["name"]] = obj
        self._emit(resource, kind, obj)

    def remove(self, resource: str, name: str, dependents: bool = False) -> None:
        obj = self.objects[resource].pop(name, None)
        if obj is None:
            return
        if dependents:
            job_id = obj["metadata"]["labels"].get(JOB_ID)
            for pod_name, pod in list(self.pods().items()):
                if pod["metadata"]["labels"].get(JOB_ID) == job_id:
                    self.remove("pods", pod_name)
            uid = obj["metadata"].get("uid")
            for secret_name, secret in list(self.secrets().items()):  # the garbage collector, for owned Secrets
                if any(ref.get("uid") == uid for ref in secret["metadata"].get("ownerReferences", [])):
                    self.remove("secrets", secret_name)
        self.rv = next(self.version)
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(resource, "DELETED", obj)

    def _emit(self, resource: str, kind: str, obj: dict[str, Any]) -> None:
        snapshot = json.loads(json.dumps(obj))
        self.log[resource].append((self.rv, kind, snapshot))
        for watched, selector, queue in self.watchers:
            if watched == resource and _matches(snapshot["metadata"].get("labels", {}), selector):
                queue.put_nowait((kind, snapshot))

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.objects["jobs"]

    def deployments(self) -> dict[str, dict[str, Any]]:
        return self.objects["deployments"]

    def secrets(self) -> dict[str, dict[str, Any]]:
        return self.objects["secrets"]

    def pods(self) -> dict[str, dict[str, Any]]:
        return self.objects["pods"]

    def condition(self, job_name: str, kind: str, reason: str = "", message: str = "") -> None:
        job = self.jobs()[job_name]
        conditions = job["status"].setdefault("conditions", [])
        conditions.append({"type": kind, "status": "True", "reason": reason, "message": message})
        self.put("jobs", job)

    def pod(self, owner: dict[str, Any], suffix: str, status: dict[str, Any]) -> None:
        template = owner["spec"]["template"]["metadata"]
        name = f"{owner['metadata']['name']}-{suffix}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": dict(template["labels"]),
                "annotations": dict(template["annotations"]),
            },
            "spec": owner["spec"]["template"]["spec"],
            "status": status,
        }
        self.put("pods", pod, "MODIFIED" if name in self.pods() else "ADDED")

    def disconnect(self) -> None:
        """Ends every open watch (a load balancer's idle timeout, an API server restart)."""
        for _, _, queue in list(self.watchers):
            queue.put_nowait(_END)

    def compact(self) -> None:
        """etcd compaction: watching from a version older than the current one answers 410."""
        self.compacted = self.rv

    def used(self) -> set[tuple[str, str, str]]:
        return {(group, resource, verb) for verb, group, resource, _ in self.calls}


def role_rules() -> set[tuple[str, str, str]]:
    docs = list(yaml.safe_load_all((REPO / "deploy/k8s/base/rbac.yaml").read_text()))
    roles = [d for d in docs if d and d["kind"] == "Role" and d["metadata"]["name"] == "kafkaml-launcher"]
    assert roles, "deploy/k8s/base/rbac.yaml has no Role kafkaml-launcher"
    allowed: set[tuple[str, str, str]] = set()
    for rule in roles[0]["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                allowed.update((group, resource, verb) for verb in rule["verbs"])
    return allowed


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubernetes]:
    server = FakeKubernetes()
    runner = web.AppRunner(server.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    server.disconnect()
    await runner.cleanup()
    assert not server.invalid, server.invalid


class Reports:
    def __init__(self) -> None:
        self.training: list[tuple[str, str]] = []
        self.inference: list[tuple[str, str]] = []

    async def on_failure(self, spec: JobSpec | ServeSpec, reason: str) -> None:
        (self.inference if isinstance(spec, ServeSpec) else self.training).append((spec.job_id, reason))

    def of(self, job_id: str) -> list[str]:
        return [reason for jid, reason in self.training + self.inference if jid == job_id]


SETTINGS = Settings(bootstrap_servers="kafka:9092", topic_prefix="kafkaml", trainer_memory_mb=1024)


def make_launcher(fake: FakeKubernetes, reports: Reports) -> KubernetesLauncher:
    configuration = client.Configuration(host=fake.url)
    return KubernetesLauncher(
        SETTINGS,
        reports.on_failure,
        k8s=KubernetesSettings(namespace=NAMESPACE, watch_timeout_s=30, request_timeout_s=5),
        api_client=client.ApiClient(configuration),
    )


@contextlib.asynccontextmanager
async def launcher_of(fake: FakeKubernetes, reports: Reports) -> AsyncIterator[KubernetesLauncher]:
    launcher = make_launcher(fake, reports)
    try:
        yield launcher
    finally:
        await launcher.close()
        await launcher._client.close()


def serve_spec(job_id: str, replicas: int = 2) -> ServeSpec:
    return fakes.serve_spec(
        job_id,
        inference_id=9,
        framework="pytorch",
        code="model = Net()",
        artifact_format="pt",
        input_topic="digits-in",
        output_topic="digits-out",
        input_config={"data_type": "float32", "data_reshape": "64"},
        replicas=replicas,
        group_id=f"kafkaml-inference-{job_id}",
    )


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def relists(fake: FakeKubernetes) -> int:
    """Lists of a whole kind (not the lookups of one job's pods)."""
    return sum(1 for verb, _, _, query in fake.calls if verb == "list" and JOB_ID not in query.get("labelSelector", ""))


def failed_container(reason: str, code: int, message: str = "") -> dict[str, Any]:
    terminated = {"exitCode": code, "reason": reason, "message": message}
    return {
        "phase": "Failed",
        "containerStatuses": [
            {"name": "trainer", "ready": False, "restartCount": 0, "state": {"terminated": terminated}}
        ],
    }


JOB_A = "0b6f0d0a-3d47-4a5a-9a55-6f3b8c1e7a10"


# --- the tests --------------------------------------------------------------------------------


async def test_deploy_creates_a_job_per_training_and_a_deployment_per_inference(fake: FakeKubernetes) -> None:
    reports = Reports()
    async with launcher_of(fake, reports) as launcher:
        await launcher.launch_training(job_spec(JOB_A, 7, gpus=1))
        await launcher.launch_inference(serve_spec("serve-1", replicas=3))
        # Idempotent on the job id: no second create.
        await launcher.launch_training(job_spec(JOB_A, 7, gpus=1))
        await launcher.launch_inference(serve_spec("serve-1", replicas=3))

        assert [c for c in fake.calls if c[0] == "create"] == [
            ("create", "batch", "jobs", {}),
            ("create", "", "secrets", {}),
            ("create", "apps", "deployments", {}),
            ("create", "", "secrets", {}),
        ]
        job = fake.jobs()[training_name(JOB_A)]
        # The spec (it carries the job's secrets) is a Secret owned by the Job, mounted read-only.
        secret = fake.secrets()[training_name(JOB_A)]
        assert secret["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
        assert JobSpec.model_validate_json(secret["stringData"]["spec.json"]) == job_spec(JOB_A, 7, gpus=1)
        pod_spec = job["spec"]["template"]["spec"]
        [volume] = [v for v in pod_spec["volumes"] if v["name"] == "spec"]
        assert volume["secret"] == {"secretName": training_name(JOB_A), "defaultMode": 0o440}
        labels = job["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "kafkaml"
        assert labels["kafkaml.io/job-id"] == JOB_A
        assert labels["kafkaml.io/deployment-id"] == "42"
        assert labels["kafkaml.io/result-id"] == "7"
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["--spec-file", "/var/run/kafkaml/spec/spec.json", "--job-id", JOB_A]
        assert {"name": volume["name"], "mountPath": "/var/run/kafkaml/spec", "readOnly": True} in container[
            "volumeMounts"
        ]
        # What anyone who may read the Job reads: the spec without its code.
        assert JobSpec.model_validate_json(job["metadata"]["annotations"]["kafkaml.io/spec"]).models[0].code == ""
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["limits"]["memory"] == "1024Mi"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KAFKAML_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["KAFKAML_JOB_ID"] == JOB_A
        assert not [k for k in env if any(w in k for w in ("DATABASE", "TOKEN", "PASSWORD"))]
        assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False

        deployment = fake.deployments()[inference_name("serve-1")]
        assert deployment["spec"]["replicas"] == 3
        assert deployment["metadata"]["labels"]["kafkaml.io/inference-id"] == "9"
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"][0] == "python"
        )

        assert await launcher.running() == {JOB_A, "serve-1"}
    assert fake.used() <= role_rules(), fake.used() - role_rules()


async def test_watch_turns_pod_and_job_states_into_failure_reports(fake: FakeKubernetes) -> None:
    reports = Reports()
    ids = {name: f"job-{name}" for name in ("oom", "deadline", "done", "evicted", "image", "crashed")}
    async with launcher_of(fake, reports) as launcher:
        for job_id in ids.values():
            await launcher.launch_training(job_spec(job_id, 1))
        await launcher.launch_inference(serve_spec("serve-crash", replicas=1))
        job = {name: fake.jobs()[training_name(job_id)] for name, job_id in ids.items()}

        # Killed for memory, then the Job gives up: one report, naming the cause.
        fake.pod(job["oom"], "a1", failed_container("OOMKilled", 137))
        fake.condition(training_name(ids["oom"]), "Failed", "BackoffLimitExceeded", "Job has reached the backoff limit")
        # Past its deadline.
        fake.condition(training_name(ids["deadline"]), "Failed", "DeadlineExceeded", "Job was active longer")
        # Finished: the trainer reported it itself.
        fake.condition(training_name(ids["done"]), "Complete")
        # Evicted, then failed.
        evicted = {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}
        fake.pod(job["evicted"], "e1", evicted)
        fake.condition(training_name(ids["evicted"]), "Failed", "BackoffLimitExceeded", "")
        # An image that cannot be pulled: reported at once, and the Job removed.
        waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "kafkaml-tensorflow:0.1.0"'}
        fake.pod(
            job["image"],
            "i1",
            {"phase": "Pending", "containerStatuses": [{"name": "trainer", "state": {"waiting": waiting}}]},
        )
        # A crash with the trainer's last log lines.
        fake.pod(job["crashed"], "c1", failed_container("Error", 139, "Traceback ...\nSegmentation fault"))
        fake.condition(training_name(ids["crashed"]), "Failed", "BackoffLimitExceeded", "")
        # An inference replica in a crash loop after running out of memory.
        crash = {
            "name": "inferencer",
            "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        }
        fake.pod(
            fake.deployments()[inference_name("serve-crash")], "x-1", {"phase": "Running", "containerStatuses": [crash]}
        )

        await eventually(lambda: len(reports.training) == 5 and len(reports.inference) == 1)
        await asyncio.sleep(0.1)  # nothing more arrives
        assert len(reports.training) == 5, reports.training
        assert "OOMKilled" in reports.of(ids["oom"])[0] and "memory" in reports.of(ids["oom"])[0]
        assert "deadline" in reports.of(ids["deadline"])[0]
        assert reports.of(ids["done"]) == []
        assert "evicted" in reports.of(ids["evicted"])[0] and "low on resource" in reports.of(ids["evicted"])[0]
        assert "ImagePullBackOff" in reports.of(ids["image"])[0]
        assert "exited with code 139" in reports.of(ids["crashed"])[0] or "signal 11" in reports.of(ids["crashed"])[0]
        assert "Segmentation fault" in reports.of(ids["crashed"])[0]
        assert "OOMKilled" in reports.of("serve-crash")[0]
        await eventually(lambda: training_name(ids["image"]) not in fake.jobs())
        assert await launcher.running() == {"serve-crash"}

        # A disconnect: the watch resumes from the last resource version (no new list).
        lists = relists(fake)
        fake.disconnect()
        await eventually(lambda: sum(1 for c in fake.calls if c[0] == "watch") >= 6)
        resumed = [c for c in fake.calls if c[0] == "watch"][-3:]
        assert all(c[3].get("resourceVersion") for c in resumed)
        await launcher.launch_training(job_spec("job-late", 2))
        fake.condition(training_name("job-late"), "Failed", "DeadlineExceeded", "")
        await eventually(lambda: bool(reports.of("job-late")))
        assert relists(fake) == lists

        # 410 Gone: history compacted while disconnected; a Job deleted in the gap is noticed by a new list.
        await launcher.launch_training(job_spec("job-gap", 3))
        await eventually(lambda: "job-gap" in launcher.workloads)
        fake.disconnect()
        fake.remove("jobs", training_name("job-gap"))
        fake.compact()
        await eventually(lambda: bool(reports.of("job-gap")))
        assert "deleted outside Kafka-ML" in reports.of("job-gap")[0]
        assert relists(fake) > lists
    assert fake.used() <= role_rules(), fake.used() - role_rules()


async def test_gone_as_an_http_status_also_lists_again(fake: FakeKubernetes) -> None:
    reports = Reports()
    fake.gone_as_http = True
    async with launcher_of(fake, reports) as launcher:
        await launcher.launch_training(job_spec("job-one", 1))
        lists = relists(fake)
        # The Job fails while the watch is away, and the history is compacted meanwhile.
        fake.disconnect()
        fake.condition(training_name("job-one"), "Failed", "DeadlineExceeded", "")
        fake.compact()
        await eventually(lambda: bool(reports.of("job-one")))
        assert relists(fake) > lists


async def test_stop_deletes_with_foreground_propagation_and_reports_nothing(fake: FakeKubernetes) -> None:
    reports = Reports()
    async with launcher_of(fake, reports) as launcher:
        await launcher.launch_training(job_spec("job-stop", 1))
        await launcher.launch_inference(serve_spec("serve-stop"))
        fake.pod(fake.jobs()[training_name("job-stop")], "p1", {"phase": "Running"})

        await launcher.stop("job-stop")
        await launcher.stop("serve-stop")
        deletes = [c for c in fake.calls if c[0] == "delete"]
        assert [(c[2], c[3].get("propagationPolicy")) for c in deletes] == [
            ("jobs", "Foreground"),
            ("deployments", "Foreground"),
        ]
        assert await launcher.running() == set()
        await eventually(lambda: not fake.jobs() and not fake.deployments() and not fake.pods())
        await asyncio.sleep(0.1)
        assert reports.training == [] and reports.inference == []
        # Idempotent: a second stop, or a stop of something unknown, is no error.
        await launcher.stop("job-stop")
        await launcher.stop("never-launched")
    assert fake.used() <= role_rules(), fake.used() - role_rules()


async def test_reconcile_after_an_orchestrator_restart(fake: FakeKubernetes) -> None:
    reports = Reports()
    async with launcher_of(fake, reports) as first:
        await first.launch_training(job_spec("job-keeps-running", 1))
        await first.launch_training(job_spec("job-fails-meanwhile", 2, 3))
        await first.launch_inference(serve_spec("serve-orphan"))
    # The orchestrator is down: a job fails, nobody watches.
    fake.pod(fake.jobs()[training_name("job-fails-meanwhile")], "z1", failed_container("OOMKilled", 137))
    fake.condition(training_name("job-fails-meanwhile"), "Failed", "BackoffLimitExceeded", "")
    creates = sum(1 for c in fake.calls if c[0] == "create")

    async with launcher_of(fake, reports) as second:
        # What runs is adopted from the cluster (its spec from the annotation), not created again.
        assert await second.running() == {"job-keeps-running", "serve-orphan"}
        adopted = second.workloads["job-fails-meanwhile"].spec
        assert isinstance(adopted, JobSpec) and [m.result_id for m in adopted.models] == [2, 3]
        # The failure that happened while it was down is reported now.
        assert len(reports.of("job-fails-meanwhile")) == 1
        assert "OOMKilled" in reports.of("job-fails-meanwhile")[0]

        # What the database says is in flight: one running job, and one that does not run.
        database = {"job-keeps-running", "job-missing"}
        missing = await second.reconcile(database)
        assert missing == {"job-missing"}
        for job_id in sorted(missing):
            await second.launch_training(job_spec(job_id, 5))
        # Launching what already runs changes nothing (the orchestrator's reconcile may do it).
        await second.launch_training(job_spec("job-keeps-running", 1))

        assert sum(1 for c in fake.calls if c[0] == "create") == creates + 2  # a Job and its spec's Secret
        deletes = [(c[2], c[3].get("propagationPolicy")) for c in fake.calls if c[0] == "delete"]
        assert deletes == [("deployments", "Foreground")]
        await eventually(lambda: inference_name("serve-orphan") not in fake.deployments())
        assert await second.running() == {"job-keeps-running", "job-missing"}
        assert reports.of("serve-orphan") == []
    assert fake.used() <= role_rules(), fake.used() - role_rules()
