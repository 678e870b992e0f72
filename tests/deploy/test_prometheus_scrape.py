"""A real Prometheus (Debian's package) scrapes a running service, and the dashboard's queries run on it.

Skips only when the `prometheus` binary is absent (`apt-get install -y prometheus`; `.ci/run` installs it).
Prometheus listens on a free loopback port and keeps its TSDB in the test's temporary folder.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO, Server, free_port

DASHBOARD = REPO / "deploy/grafana/dashboards/scorer.json"
LISTEN = "0A"  # TCP state code of a listening socket in /proc/net/tcp*


class Prometheus:
    def __init__(self, binary: str, target: str, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "scorer", "metrics_path": "/metrics/",
                                "static_configs": [{"targets": [target]}]}],
        }
        config_path = folder / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = folder / "prometheus.log"
        self.process = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, cwd=folder)

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{promql}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(self, promql: str, accept: Any, timeout: float = 30.0, between: Any = None) -> float:
        """Polls until one sample's value passes `accept`; `between` runs each round (keeps traffic flowing)."""
        deadline = time.time() + timeout
        seen: list[dict[str, Any]] = []
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                seen = self.query(promql)
            except httpx.HTTPError:
                seen = []  # not listening yet
            for sample in seen:
                value = float(sample["value"][1])
                if accept(value):
                    return value
            if between is not None:
                between()
            time.sleep(0.5)
        raise TimeoutError(f"{promql}: last result {seen}; log: {self.log_path.read_text()[-1500:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def listening_addresses(pid: int) -> set[str]:
    """Local addresses (hex, as the kernel writes them) of the process's listening TCP sockets."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                found.add(fields[1].rsplit(":", 1)[0])
    return found


def dashboard_expressions() -> Iterator[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(json.loads(DASHBOARD.read_text())["panels"]):
        for target in panel.get("targets", []):
            yield str(target["expr"])


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not on the PATH (apt-get install -y prometheus; .ci/run does it)")
    return binary


def test_real_prometheus_scrapes_the_service(prometheus_binary: str, tiny_artifacts: Path,
                                             tmp_path: Path) -> None:
    server = Server({"SCORER_ARTIFACTS": str(tiny_artifacts)}, tmp_path / "server.log")
    prometheus: Prometheus | None = None
    sent = 0

    def score_more() -> None:
        nonlocal sent
        # distinct texts: a duplicate would come from the cache and skip the trunk and head stages
        answers = [f"acid rain dissolves marble sample {sent + n}" for n in range(4)]
        response = httpx.post(f"{server.url}/score/item-a", json={"answers": answers}, timeout=30)
        assert response.status_code == 200, response.text
        sent += len(answers)

    try:
        server.wait_ready()
        score_more()
        assert httpx.post(f"{server.url}/score/item-b", json={"answer": "idk"}, timeout=30).status_code == 200
        prometheus = Prometheus(prometheus_binary, f"127.0.0.1:{server.port}", tmp_path)

        assert prometheus.wait_for('up{job="scorer"}', lambda value: value == 1) == 1
        assert listening_addresses(prometheus.process.pid) == {"0100007F"}, "prometheus listens beyond loopback"
        # a rate needs two scrapes that differ: keep scoring while waiting
        p99 = prometheus.wait_for(
            'histogram_quantile(0.99, sum by (le) (rate(scorer_stage_duration_seconds_bucket{stage="trunk"}[1m])))',
            lambda value: math.isfinite(value) and value > 0, between=score_more)
        assert p99 <= 10.0  # the largest finite bucket: a trunk run of a few tiny rows is far below it
        # scoring has stopped: the counter settles at exactly what was sent
        assert prometheus.wait_for('scorer_answers_scored_total{item="item-a"}', lambda value: value == sent) == sent
        switch = prometheus.wait_for('sum(scorer_task_switch_duration_seconds_count{item="item-b"})',
                                     lambda value: value >= 1)
        assert switch == 1  # item-b's head was brought in once and stayed cached

        # Every Grafana panel's query parses and evaluates on a real Prometheus (Grafana itself is not packaged).
        expressions = list(dashboard_expressions())
        assert expressions
        answered = [expr for expr in expressions if prometheus.query(expr)]
        assert any("scorer_head_cache_events_total" in expr for expr in answered)
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()
