"""deploy/k8s: every manifest validates (strictly, unknown fields refused) against the Kubernetes API
schemas, and the pieces fit together: probes, resources, non-root, names that resolve, settings
this code accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.checks import ROOT, check_shoal_env
from tests.engines import require_module

K8S = ROOT / "deploy" / "k8s"


def documents() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(found)


@pytest.mark.parametrize(
    ("path", "doc"),
    [(p, d) for p, d in documents() if d["kind"] != "Kustomization"],
    ids=lambda v: v.name if isinstance(v, Path) else f"{v['kind']}/{v['metadata']['name']}",
)
def test_manifest_validates_strictly_against_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    validate = require_module("kubernetes_validate", "kubernetes-validate")
    try:
        validate.validate(doc, validate.latest_version(), strict=True)
    except validate.ValidationError as exc:
        pytest.fail(f"{path.name}: {exc.message} at {'/'.join(map(str, exc.path))}")


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = (d for _, d in documents() if d["kind"] == "Kustomization")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("role", ["api", "worker"])
def test_deployment_runs_the_role_with_probes_resources_and_no_root(role: str) -> None:
    deployment = resources_of("Deployment")[f"shoal-{role}"]
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    c = container(deployment)
    assert c["args"] == ["serve", "--role", role]
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] == "http"
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= c["resources"]["limits"].keys()
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts, "a read-only root needs writable /data and /tmp"
    assert pod["terminationGracePeriodSeconds"] > 20, "longer than SHOAL_DRAIN_TIMEOUT_S"


def test_config_and_secret_names_resolve_and_hold_valid_settings() -> None:
    config, secrets = resources_of("ConfigMap"), resources_of("Secret")
    for deployment in [*resources_of("Deployment").values(), *resources_of("Job").values()]:
        pod = deployment["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        refs = c["envFrom"]
        assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= config.keys()
        assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} <= secrets.keys()
        env = {**config["shoal-config"]["data"], **secrets["shoal-secrets"]["stringData"]}
        env |= {e["name"]: e["value"] for e in c.get("env", [])}
        settings = check_shoal_env(env)
        assert settings.auth_enabled and settings.host == "0.0.0.0"
    secret_keys = set(secrets["shoal-secrets"]["stringData"])
    assert {"SHOAL_API_KEYS", "SHOAL_DATABASE_URL"} <= secret_keys
    assert not secret_keys & set(config["shoal-config"]["data"]), "a setting lives in one place"


def test_service_hpa_and_job_point_at_what_exists() -> None:
    deployments = resources_of("Deployment")
    (service,) = resources_of("Service").values()
    api_labels = deployments["shoal-api"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= api_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    for hpa in resources_of("HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    worker_hpa = resources_of("HorizontalPodAutoscaler")["shoal-worker"]
    partitions = int(resources_of("ConfigMap")["shoal-config"]["data"]["SHOAL_LOG_PARTITIONS"])
    assert worker_hpa["spec"]["maxReplicas"] <= partitions, "workers past the partition count sit idle"
    (job,) = resources_of("Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
