"""Kubernetes manifests (base and overlays) checked without a cluster: paths, strict schemas, probes,
security, the durable job store, and the rendered overlays (when kubectl is on the PATH)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_tools import K8S, OVERLAYS, REPO, assert_durable_job_store, load_yaml_documents, run_tool


def test_k8s_job_store_is_durable() -> None:
    documents = list(yaml.safe_load_all((REPO / "k8s/base/redis-jobs.yaml").read_text()))
    stateful = next(doc for doc in documents if doc["kind"] == "StatefulSet")
    assert_durable_job_store(stateful["spec"]["template"]["spec"]["containers"][0]["args"])
    assert stateful["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    config = yaml.safe_load((REPO / "k8s/base/configmap.yaml").read_text())["data"]
    assert config["SCORER_JOB_REDIS_URL"] == "redis://redis-jobs:6379/0"
    assert "redis-jobs.yaml" in (REPO / "k8s/base/kustomization.yaml").read_text()


def kustomizations() -> dict[Path, dict[str, Any]]:
    return {path: yaml.safe_load(path.read_text()) for path in sorted(K8S.rglob("kustomization.yaml"))}


def test_kustomization_paths_exist() -> None:
    found = kustomizations()
    assert K8S / "base/kustomization.yaml" in found
    for overlay in OVERLAYS:
        assert K8S / "overlays" / overlay / "kustomization.yaml" in found
    for path, spec in found.items():
        for resource in spec.get("resources", []):
            target = (path.parent / resource).resolve()
            assert target.exists(), f"{path}: resource {resource} does not exist"
            if target.is_dir():
                assert (target / "kustomization.yaml").exists(), f"{path}: {resource} is not a kustomization"
        for patch in spec.get("patches", []):
            if "path" in patch:
                assert (path.parent / patch["path"]).exists(), f"{path}: patch {patch['path']} does not exist"


def test_manifests_validate_strictly() -> None:
    """Every full object under k8s/ (not kustomization.yaml, not the overlays' partial patches)."""
    patches = {(path.parent / patch["path"]).resolve() for path, spec in kustomizations().items()
               for patch in spec.get("patches", []) if "path" in patch}
    manifests = [path for path in sorted(K8S.rglob("*.yaml"))
                 if path.name != "kustomization.yaml" and path.resolve() not in patches]
    assert len(manifests) >= 6
    run_tool("kubernetes-validate", "--strict", "--quiet", *manifests)


def scorer_container(documents: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "scorer")
    pod = deployment["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "scorer")


def test_base_deployment_probes_shutdown_and_security() -> None:
    documents = load_yaml_documents(K8S / "base/deployment.yaml")
    pod, container = scorer_container(documents)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert "startupProbe" in container
    assert pod["terminationGracePeriodSeconds"] >= 35  # preStop + uvicorn's 30 s graceful shutdown
    assert "preStop" in container["lifecycle"]
    assert pod["enableServiceLinks"] is False  # Service `scorer` would inject SCORER_PORT=tcp://...
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"requests", "limits"} <= container["resources"].keys()
    keys = {env["name"]: env for env in container["env"]}
    assert "secretKeyRef" in keys["SCORER_API_KEYS_SHA256"]["valueFrom"]
    assert any("configMapRef" in source for source in container["envFrom"])
    annotations = documents[0]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics/"
    assert not any(doc["kind"] == "Secret" for path in K8S.rglob("*.yaml") for doc in load_yaml_documents(path)
                   if isinstance(doc, dict) and "kind" in doc), "secrets must not be committed"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on the PATH: overlays not rendered (their files are validated above)")
    rendered = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                              text=True, timeout=120, check=False)
    assert rendered.returncode == 0, rendered.stderr
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(rendered.stdout)
    run_tool("kubernetes-validate", "--strict", "--quiet", out)
    documents = load_yaml_documents(out)
    assert {doc["kind"] for doc in documents} >= {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                                                    "PodDisruptionBudget"}
    _, container = scorer_container(documents)
    limits = container["resources"]["limits"]
    config = next(doc for doc in documents if doc["kind"] == "ConfigMap")["data"]
    if overlay == "gpu":
        assert str(limits["nvidia.com/gpu"]) == "1"
        assert container["image"].endswith("-gpu")
        assert config["SCORER_DEVICE"] == "cuda"
    else:
        assert "nvidia.com/gpu" not in limits
        assert not container["image"].endswith("-gpu")
        assert config["SCORER_DEVICE"] == "cpu"
