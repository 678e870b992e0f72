"""Deployment files (Dockerfile, compose, k8s, Prometheus, Grafana) checked without a Docker engine or cluster.

Linters and schema validators come from the `dev` extra and run from the venv's bin directory; they work
offline (check-jsonschema's vendored compose schema, kubernetes-validate's bundled Kubernetes schemas,
hadolint's bundled binary). `kubectl` (for `kubectl kustomize`) and `promtool` are not pip packages: those
checks skip when the binary is not on the PATH.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DASHBOARD = REPO / "deploy/grafana/dashboards/scorer.json"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "deploy/prometheus/prometheus.yml"
K8S = REPO / "k8s"
OVERLAYS = ("cpu", "gpu")
METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])scorer_[A-Za-z0-9_:]*")
# Sample names each metric type exports, by the family name that describe() reports (counters without _total).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
}


def run_tool(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """A dev-extra tool from the venv that runs the tests; fails (does not skip) when it is missing."""
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{name} is not installed in {BIN}: pip install -e '.[dev]'")
    result = subprocess.run([str(exe), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, f"{name} {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def exported_metric_names() -> set[str]:
    from prometheus_client.metrics import MetricWrapperBase

    import app.metrics

    names: set[str] = set()
    for collector in vars(app.metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        for family in collector.describe():
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))  # collapsed rows nest their panels


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


# --- Grafana / Prometheus ------------------------------------------------------------------------------


def test_exported_metric_names_are_collected() -> None:
    names = exported_metric_names()
    assert {"scorer_request_duration_seconds_bucket", "scorer_head_cache_events_total", "scorer_queue_rows",
            "scorer_batch_rows_count"} <= names
    assert "scorer_head_cache_events" not in names  # a counter's samples end in _total


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_metric_names()
    panels = [panel for panel in iter_panels(dashboard["panels"]) if panel.get("type") != "row"]
    assert panels, "dashboard has no panels"
    used: set[str] = set()
    for panel in panels:
        targets = panel.get("targets") or []
        assert targets, f"panel {panel.get('title')!r} has no targets"
        for target in targets:
            expr = target.get("expr", "")
            names = set(METRIC_NAME.findall(expr))
            assert names, f"panel {panel['title']!r}: expr names no scorer_* metric: {expr!r}"
            unknown = names - exported
            assert not unknown, f"panel {panel['title']!r}: {sorted(unknown)} not exported by app/metrics.py"
            used |= names
    # the panels the service's operators asked for
    for required in ("scorer_task_switch_duration_seconds_bucket", "scorer_head_cache_events_total",
                     "scorer_heads_loaded", "scorer_head_cache_bytes", "scorer_stage_duration_seconds_bucket",
                     "scorer_request_duration_seconds_count", "scorer_queue_rows", "scorer_batch_rows_bucket"):
        assert required in used, f"no panel queries {required}"


def test_dashboard_datasource_and_provisioning_match_compose() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasources = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in datasources["datasources"]}
    for panel in iter_panels(dashboard["panels"]):
        for item in [panel, *panel.get("targets", [])]:
            if isinstance(item.get("datasource"), dict):
                assert item["datasource"]["uid"] in uids, f"panel {panel.get('title')!r}: unknown datasource"
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text())
    paths = {entry["options"]["path"] for entry in provider["providers"]}
    mounts = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["volumes"]
    assert any(mount.startswith("./deploy/grafana/dashboards:") and mount.split(":")[1] in paths
               for mount in mounts), "Grafana's dashboard provider path is not where compose mounts the JSON"


def test_prometheus_scrapes_the_scorer_metrics_app() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    scorer = next(job for job in config["scrape_configs"] if job["job_name"] == "scorer")
    assert scorer["metrics_path"] == "/metrics/"  # app.mount("/metrics", ...): /metrics redirects
    assert "scorer:8000" in scorer["static_configs"][0]["targets"]


def test_promtool_check_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on the PATH (it ships with Prometheus, not on PyPI)")
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- docker compose --------------------------------------------------------------------------------------


def assert_durable_job_store(args: list[str]) -> None:
    """Jobs are never evicted and every write reaches the append-only file before Redis answers."""
    options = dict(zip(args[args[0] == "redis-server"::2], args[1 + (args[0] == "redis-server")::2], strict=False))
    assert options["--maxmemory-policy"] == "noeviction"
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "always"


def test_k8s_job_store_is_durable() -> None:
    documents = list(yaml.safe_load_all((REPO / "k8s/base/redis-jobs.yaml").read_text()))
    stateful = next(doc for doc in documents if doc["kind"] == "StatefulSet")
    assert_durable_job_store(stateful["spec"]["template"]["spec"]["containers"][0]["args"])
    assert stateful["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    config = yaml.safe_load((REPO / "k8s/base/configmap.yaml").read_text())["data"]
    assert config["SCORER_JOB_REDIS_URL"] == "redis://redis-jobs:6379/0"
    assert "redis-jobs.yaml" in (REPO / "k8s/base/kustomization.yaml").read_text()


def test_compose_file_matches_compose_spec() -> None:
    run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE)


def test_compose_services() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"scorer", "scorer-gpu", "redis", "prometheus", "grafana"} <= services.keys()
    for name in ("scorer", "scorer-gpu"):
        env = services[name]["environment"]
        assert env["SCORER_REDIS_URL"] == "redis://redis:6379/0"
        assert "${" in env["SCORER_API_KEYS_SHA256"], "API key digest must come from the environment"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert env["SCORER_JOB_REDIS_URL"] == "redis://redis-jobs:6379/0"
        assert services[name]["depends_on"]["redis-jobs"]["condition"] == "service_healthy"
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert_durable_job_store(services["redis-jobs"]["command"])
    assert any(volume.endswith(":/data") for volume in services["redis-jobs"]["volumes"])
    gpu = services["scorer-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["RUNTIME"] == "gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)
    assert "profiles" not in services["scorer"]


# --- Dockerfile ------------------------------------------------------------------------------------------


def test_hadolint() -> None:
    run_tool("hadolint", "--config", REPO / ".hadolint.yaml", REPO / "Dockerfile")


def test_dockerfile_runtime_stage_serves_without_torch() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)
    by_name = {re.search(r"AS (\w+)", stage).group(1): stage for stage in stages[1:]}  # type: ignore[union-attr]
    assert list(by_name) == ["export", "runtime"]
    runtime = by_name["runtime"]
    assert "torch" not in runtime
    assert ".[train]" not in runtime and "[cpu,train]" not in runtime
    assert 'pip install ".[${RUNTIME}]"' in runtime
    assert re.search(r"^USER (?!0\b|root\b)\S+", runtime, flags=re.MULTILINE), "runtime must not run as root"
    assert "COPY --from=export" in runtime and "/srv/artifacts" in runtime
    assert "SCORER_ARTIFACTS=/srv/artifacts" in runtime and "SCORER_HOST=0.0.0.0" in runtime
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/ready", runtime, flags=re.MULTILINE)
    assert 'CMD ["python", "-m", "app"]' in runtime
    assert "python -m export --adapters adapters --out /artifacts" in by_name["export"]


# --- YAML ------------------------------------------------------------------------------------------------


def test_yamllint() -> None:
    files = [COMPOSE, REPO / ".hadolint.yaml", *sorted((REPO / "deploy").rglob("*.yml")),
             *sorted(K8S.rglob("*.yaml"))]
    # relaxed, with the project's line length (ruff: 120); --strict turns warnings into failures
    run_tool("yamllint", "--strict", "-d", "{extends: relaxed, rules: {line-length: {max: 120}}}", *files)


# --- Kubernetes ------------------------------------------------------------------------------------------


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
