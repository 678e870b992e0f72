"""Scenario 3: faults injected into a running service — Redis dies and returns, head files go bad,
SIGTERM under load, a restart with a job in flight."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.reliability.harness import RedisProcess, metric_value, start_server
from tests.reliability.loadgen import LoadRun, mixed_plan, sequential_reference, verify
from tests.reliability.report import ResultsTable, Row

pytestmark = [pytest.mark.reliability, pytest.mark.redis]
ITEMS = ["item-a", "item-b"]


def job_rows(count: int, prefix: str) -> list[dict[str, Any]]:
    # Unique texts: the duplicate cache cannot answer them, so the job really occupies the scorer.
    return [{"id": f"{prefix}-{n}", "item_id": ITEMS[n % 2], "answer": f"{prefix} row {n} acid rain on marble"}
            for n in range(count)]


def poll_job(url: str, job_id: str, until: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
    deadline = time.time() + timeout_s
    status: dict[str, Any] = {}
    while time.time() < deadline:
        response = httpx.get(f"{url}/jobs/{job_id}", timeout=5)
        if response.status_code == 200:
            status = response.json()
            if status["status"] in until:
                return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {until} in {timeout_s} s; last {status.get('status')}")


def test_redis_killed_mid_load(tiny_artifacts: Path, tmp_path: Path, load_s: float,
                               results_table: ResultsTable) -> None:
    redis = RedisProcess()
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_REDIS_URL": redis.url},
                          tmp_path / "server.log")
    try:
        reference = sequential_reference(server.url, ITEMS)  # also fills the Redis duplicate cache
        load = LoadRun(server.url, mixed_plan(ITEMS), 16, load_s)
        loader = load.in_background()
        time.sleep(load_s / 3)
        # Submitted just before the fault, so even a fast machine is still scoring it when Redis dies.
        job = httpx.post(f"{server.url}/jobs", json={"answers": job_rows(6_000, "big")}, timeout=30)
        assert job.status_code == 202
        job_id = job.json()["job_id"]
        assert poll_job(server.url, job_id, ("running", "done"), 10)["status"] == "running", "finished too soon"
        redis.kill()
        # The job in flight is paused, not failed: its runner answers from memory while the store is down.
        during = httpx.get(f"{server.url}/jobs/{job_id}", timeout=10)
        refused = httpx.post(f"{server.url}/jobs", json={"answers": job_rows(3, "down")}, timeout=10)
        time.sleep(max(load_s / 3 - 1, 0.5))
        redis.start()  # empty: this Redis has no persistence (7b covers the job store's own)
        loader.join(timeout=load_s + 60)
        resumed = poll_job(server.url, job_id, ("failed", "done"), 120)
        # Reconnected: a new job is stored and finished, and the cache writes to the new Redis again.
        after = httpx.post(f"{server.url}/jobs", json={"answers": job_rows(5, "after")}, timeout=10)
        finished = poll_job(server.url, after.json()["job_id"], ("done",), 30) if after.status_code == 202 else {}
        redis_up = metric_value(server.url, "scorer_redis_up ")
        redis_errors = metric_value(server.url, "scorer_redis_errors_total ") or 0
        cached_keys = redis.client().dbsize()
        log = server.log_path.read_text()
        verdict = verify(load.calls, reference)
        ok = (verdict.server_errors == 0 and verdict.lost == 0 and verdict.wrong == 0 and resumed["status"] == "done"
              and refused.status_code == 503 and finished.get("status") == "done" and redis_up == 1.0)
        results_table.add(Row("3a. redis-server SIGKILLed mid-load, restarted", verdict.requests,
                              verdict.server_errors, verdict.lost, verdict.p99_ms, "pass" if ok else "FAIL",
                              f"{load_s:g} s, 16 clients, single+multi+batch; {verdict.wrong} differ from the "
                              f"sequential run; job in flight ({len(resumed.get('results') or [])} rows) paused, "
                              f"not failed: GET during the outage {during.status_code} "
                              f"{during.json().get('status')}, then `{resumed['status']}`; new job during "
                              f"outage → {refused.status_code} {refused.json().get('error_type')}; "
                              f"{redis_errors:.0f} Redis errors counted; reconnected: new job done, "
                              f"{cached_keys} keys written to the new Redis"))
        assert verdict.statuses == {200: verdict.requests}, verdict.statuses  # scoring never noticed
        assert verdict.lost == 0 and verdict.wrong == 0
        assert during.status_code == 200 and during.json()["status"] in ("running", "done")
        assert resumed["status"] == "done" and len(resumed["results"]) == 6_000
        assert [row["id"] for row in resumed["results"]] == [f"big-{n}" for n in range(6_000)]
        assert refused.status_code == 503 and refused.json()["error_type"] == "job_store_unavailable"
        assert refused.headers["retry-after"] == "1"
        assert finished.get("status") == "done" and len(finished["results"]) == 5
        assert redis_up == 1.0 and redis_errors > 0 and cached_keys > 0
        assert "duplicate cache bypassed" in log and "redis reachable again" in log
    finally:
        server.stop()
        redis.kill()


def broken_artifacts(tiny_artifacts: Path, folder: Path) -> Path:
    """item-a good, item-c a good copy of it, item-b's head corrupt, item-d's head file missing."""
    shutil.copytree(tiny_artifacts, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    good = manifest["items"]["item-a"]
    shutil.copy(folder / good["file"], folder / "item-c.onnx_adapter")
    manifest["items"]["item-c"] = {**good, "file": "item-c.onnx_adapter"}
    manifest["items"]["item-d"] = {**good, "file": "items/item-d/v1.onnx_adapter"}
    (folder / manifest["items"]["item-b"]["file"]).write_bytes(b"\x00 not an adapter \xff" * 100)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_bad_head_fails_only_its_item(tiny_artifacts: Path, tmp_path: Path, load_s: float,
                                      results_table: ResultsTable) -> None:
    artifacts = broken_artifacts(tiny_artifacts, tmp_path / "artifacts")
    server = start_server({"SCORER_ARTIFACTS": str(artifacts), "SCORER_DUPLICATE_CACHE_ENTRIES": "0"},
                          tmp_path / "server.log")
    bad = {"item-b", "item-d"}
    try:
        reference = sequential_reference(server.url, ["item-a", "item-c"])
        calls = LoadRun(server.url, mixed_plan(["item-a", "item-b", "item-c", "item-d"]), 16,
                        max(load_s / 3, 3.0)).run()
        verdict = verify(calls, reference, expect_error=lambda item: 503 if item in bad else None)
        only_good = [c for c in calls if not {item for item, _ in c.planned.rows} & bad]
        single_bad = [c for c in calls if c.planned.path != "/batch" and c.planned.rows[0][0] in bad]
        batches = [c for c in calls if c.planned.path == "/batch"]
        good_ok = all(c.status == 200 for c in only_good)
        bad_ok = all(c.status == 503 and c.body["error_type"] == "item_unavailable"
                     and c.planned.rows[0][0] in c.body["error"] for c in single_bad)
        batch_ok = all(c.status == 200 for c in batches)  # bad rows carry their own error (checked by verify)
        unexpected_5xx = sum(1 for c in calls if c.status is not None and c.status >= 500 and c not in single_bad)
        ok = good_ok and bad_ok and batch_ok and verdict.lost == 0 and verdict.wrong == 0 and unexpected_5xx == 0
        results_table.add(Row("3b. one head corrupt, one missing", verdict.requests, unexpected_5xx, verdict.lost,
                              verdict.p99_ms, "pass" if ok else "FAIL",
                              f"{len(single_bad)} requests to the two bad items → 503 item_unavailable; "
                              f"{len(only_good)} to good items all 200; {len(batches)} mixed batches 200 with "
                              f"per-row errors; {verdict.wrong} rows wrong"))
        assert single_bad and only_good and batches
        assert good_ok and bad_ok and batch_ok
        assert verdict.lost == 0 and verdict.wrong == 0 and unexpected_5xx == 0
    finally:
        server.stop()


def test_sigterm_drains_under_load(tiny_artifacts: Path, tmp_path: Path, load_s: float,
                                   results_table: ResultsTable) -> None:
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_DUPLICATE_CACHE_ENTRIES": "0",
                           "SCORER_DRAIN_DELAY_S": "1.5"}, tmp_path / "server.log")
    reference = sequential_reference(server.url, ITEMS)
    load = LoadRun(server.url, mixed_plan(ITEMS), 16, load_s + 30)
    not_ready_at: list[float] = []

    def balancer() -> None:
        """Plays the load balancer: routes no new request here once readiness says 503."""
        with httpx.Client(timeout=2) as client:
            while server.process.poll() is None:
                try:
                    if client.get(f"{server.url}/health/ready").status_code == 503:
                        not_ready_at.append(time.perf_counter())
                        load.stop_issuing.set()
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)

    loader = load.in_background()
    time.sleep(min(load_s / 3, 4.0))
    watcher = threading.Thread(target=balancer)
    watcher.start()
    signalled = time.perf_counter()
    server.process.send_signal(signal.SIGTERM)
    watcher.join(timeout=10)
    loader.join(timeout=60)
    exit_code = server.process.wait(timeout=60)
    exited = time.perf_counter()
    verdict = verify(load.calls, reference)
    in_flight_at_signal = [c for c in load.calls if c.started < signalled < c.started + c.latency]
    answered_after_flip = [c for c in load.calls if not_ready_at and c.started + c.latency > not_ready_at[0]]
    ok = (bool(not_ready_at) and verdict.statuses == {200: verdict.requests} and verdict.lost == 0
          and verdict.wrong == 0 and exit_code in (0, -signal.SIGTERM) and bool(in_flight_at_signal))
    results_table.add(Row("3c. SIGTERM under load (drain delay 1.5 s)", verdict.requests, verdict.server_errors,
                          verdict.lost, verdict.p99_ms, "pass" if ok else "FAIL",
                          f"readiness 503 {1000 * (not_ready_at[0] - signalled) if not_ready_at else -1:.0f} ms "
                          f"after the signal, exit {1000 * (exited - signalled):.0f} ms after; "
                          f"{len(in_flight_at_signal)} requests in flight at the signal and "
                          f"{len(answered_after_flip)} answered after readiness flipped, all 200"))
    assert not_ready_at and not_ready_at[0] - signalled < 1.0, "readiness did not flip first"
    assert in_flight_at_signal, "nothing was in flight when the signal came"
    assert verdict.statuses == {200: verdict.requests}, verdict.statuses
    assert verdict.lost == 0 and verdict.wrong == 0
    assert exit_code in (0, -signal.SIGTERM)


def test_job_survives_a_crash_restart(tiny_artifacts: Path, tmp_path: Path, results_table: ResultsTable) -> None:
    redis = RedisProcess()
    env = {"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_REDIS_URL": redis.url, "SCORER_JOB_LEASE_S": "2",
           "SCORER_DUPLICATE_CACHE_ENTRIES": "0"}
    rows = job_rows(4000, "survivor")
    first: Server | None = start_server(env, tmp_path / "first.log")
    second: Server | None = None
    try:
        assert first is not None
        job_id = httpx.post(f"{first.url}/jobs", json={"answers": rows}, timeout=30).json()["job_id"]
        progress = poll_job(first.url, job_id, ("running", "done"), 10)
        assert progress["status"] == "running", "the job finished before the crash: nothing to re-queue"
        first.process.kill()  # a crash: no drain, no lease handed back
        first.process.wait(timeout=10)
        first = None
        second = start_server(env, tmp_path / "second.log")
        done = poll_job(second.url, job_id, ("done", "failed"), 120)
        expected = [result for start in range(0, len(rows), 1000)
                    for result in httpx.post(f"{second.url}/batch", json={"answers": rows[start : start + 1000]},
                                             timeout=60).json()["results"]]
        results = done.get("results") or []
        same = [a["id"] == b["id"] and a["score"] == b["score"] for a, b in zip(results, expected, strict=False)]
        requeued = metric_value(second.url, "scorer_jobs_requeued_total ")
        ok = done["status"] == "done" and len(results) == len(rows) and all(same) and requeued == 1.0
        results_table.add(Row("3d. job in flight, server SIGKILLed and restarted (Redis mode)", len(rows),
                              0, len(rows) - sum(same), float("nan"), "pass" if ok else "FAIL",
                              f"killed at {progress['done']}/{len(rows)} rows; the restarted server re-queued it "
                              f"(lease 2 s) and finished all {len(results)} rows, equal to /batch"))
        assert done["status"] == "done" and len(results) == len(rows) and all(same)
        assert requeued == 1.0 and "re-queued" in second.log_path.read_text()
    finally:
        for server in (first, second):
            if server is not None:
                server.stop()
        redis.kill()
