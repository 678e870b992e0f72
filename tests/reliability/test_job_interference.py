"""Scenario 12: interactive scoring beside running jobs — real ensembles, where a job run takes longest."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.reliability.harness import start_server
from tests.reliability.report import ResultsTable, Row

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
ITEM = "asap-01"  # the four-member ensemble: the costliest rows a job can send


def _timed_scores(client: httpx.Client, prefix: str, count: int) -> list[float]:
    seconds = []
    for n in range(count):  # unique answers: the duplicate cache cannot answer them
        started = time.perf_counter()
        response = client.post(f"/score/{ITEM}", json={"answer": f"{prefix} {n}: the acid rain dissolves marble"})
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return seconds


def test_jobs_do_not_delay_interactive_scoring(committed_artifacts: Path, tmp_path: Path,
                                               results_table: ResultsTable) -> None:
    server = start_server({"SCORER_ARTIFACTS": str(committed_artifacts), "SCORER_THREADS": "0"},
                          tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            _timed_scores(client, "warm-up", 5)
            idle = _timed_scores(client, "idle", 40)
            jobs = [client.post("/jobs", json={"answers": [
                {"id": n, "item_id": ITEM, "answer": f"job {j} row {n}: vinegar and the mass of the samples"}
                for n in range(300)]}).json()["job_id"] for j in range(4)]
            time.sleep(1.0)  # the jobs are running
            busy = _timed_scores(client, "busy", 40)
            states = [client.get(f"/jobs/{job_id}").json() for job_id in jobs]
            for job_id in jobs:
                client.delete(f"/jobs/{job_id}")
    finally:
        server.stop()
    idle_p99, busy_p99 = float(np.percentile(idle, 99)), float(np.percentile(busy, 99))
    slow = sum(seconds > 2 * idle_p99 for seconds in busy)
    running = sum(state["status"] == "running" for state in states)
    ok = running > 0 and slow <= 2
    results_table.add(Row("12. interactive /score beside 4 running jobs", len(idle) + len(busy), 0, 0,
                          busy_p99 * 1000, "pass" if ok else "FAIL",
                          f"{ITEM} (ensemble): idle p99 {idle_p99 * 1000:.0f} ms, beside jobs p99 "
                          f"{busy_p99 * 1000:.0f} ms (median {np.median(busy) * 1000:.0f} ms); {slow} of {len(busy)} "
                          f"slower than 2x idle p99; {running} jobs still running at the end"))
    assert running > 0, "the jobs ended before the measurement did: nothing was measured beside them"
    assert slow <= 2, f"{slow} of {len(busy)} requests slower than 2x idle p99 ({idle_p99:.3f} s): {sorted(busy)[-5:]}"
