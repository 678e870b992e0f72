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
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_tools import K8S, REPO, assert_durable_job_store, run_tool

DASHBOARD = REPO / "deploy/grafana/dashboards/scorer.json"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "deploy/prometheus/prometheus.yml"
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
