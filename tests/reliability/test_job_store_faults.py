"""Scenario 11: the jobs Redis hangs or restarts — fast 503s behind a breaker, progress that never goes back."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import httpx
import pytest

from tests.reliability.harness import JOB_STORE, RedisProcess, start_server
from tests.reliability.report import ResultsTable, Row
from tests.reliability.test_faults import job_rows, poll_job

pytestmark = [pytest.mark.reliability, pytest.mark.redis]


def test_hung_job_store_answers_503_fast(tiny_artifacts: Path, tmp_path: Path, results_table: ResultsTable) -> None:
    jobs_redis = RedisProcess(JOB_STORE, tmp_path)
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_JOB_REDIS_URL": jobs_redis.url},
                          tmp_path / "server.log")
    try:
        jobs_redis.pause()  # SIGSTOP: connections are accepted, nothing answers
        seconds: list[tuple[str, int, float]] = []
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for n in range(6):
                for method, path, body in (("GET", "/jobs/abc", None),
                                           ("POST", "/jobs", {"answers": job_rows(4, f"hung-{n}")})):
                    started = time.perf_counter()
                    status = client.request(method, path, json=body).status_code
                    seconds.append((f"{method} {path}", status, time.perf_counter() - started))
            score = client.post("/score/item-a", json={"answer": "acid rain on marble"}).status_code
        slowest_first = max(s for _, _, s in seconds[:2])
        slowest_later = max(s for _, _, s in seconds[2:])
        ok = all(status == 503 for _, status, _ in seconds) and slowest_first < 2.5 and slowest_later < 0.5
        results_table.add(Row("11a. hung jobs Redis: 503 fast", len(seconds), 0, 0, slowest_later * 1000,
                              "pass" if ok and score == 200 else "FAIL",
                              f"every /jobs call 503; the first {slowest_first:.2f} s, the next {len(seconds) - 2} "
                              f"at most {slowest_later:.3f} s (breaker open); /score unaffected ({score})"))
        assert all(status == 503 for _, status, _ in seconds), seconds
        assert slowest_first < 2.5, seconds
        assert slowest_later < 0.5, seconds
        assert score == 200
    finally:
        jobs_redis.resume()
        server.stop()
        jobs_redis.kill()


def test_progress_never_goes_back_across_a_job_store_restart(tiny_artifacts: Path, tmp_path: Path,
                                                              results_table: ResultsTable) -> None:
    jobs_redis = RedisProcess(JOB_STORE, tmp_path)
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_JOB_REDIS_URL": jobs_redis.url,
                           "SCORER_DUPLICATE_CACHE_ENTRIES": "0"}, tmp_path / "server.log")
    rows = job_rows(3000, "restart")
    try:
        job_id = httpx.post(f"{server.url}/jobs", json={"answers": rows}, timeout=30).json()["job_id"]
        seen: list[int] = []
        restarted = False
        deadline = time.time() + 180
        status: dict[str, object] = {}
        while time.time() < deadline:
            response = httpx.get(f"{server.url}/jobs/{job_id}", timeout=10)
            if response.status_code == 200:
                status = response.json()
                seen.append(int(status["done"]))  # type: ignore[call-overload]
                if status["status"] == "done":
                    break
                if not restarted and seen[-1] >= 64:
                    jobs_redis.kill()  # the jobs Redis restarts from its append-only file mid-job
                    time.sleep(0.5)
                    jobs_redis.start()
                    restarted = True
            time.sleep(0.02)
        final = poll_job(server.url, job_id, ("done",), 60)
        backwards = [(a, b) for a, b in itertools.pairwise(seen) if b < a]
        ok = restarted and not backwards and len(final["results"]) == len(rows) and final["restarts"] == 0
        results_table.add(Row("11b. job progress across a jobs-Redis restart", len(seen), 0, 0, float("nan"),
                              "pass" if ok else "FAIL",
                              f"{len(seen)} polls, done only grew ({seen[0]} → {seen[-1]}); {len(backwards)} steps "
                              "back; the job finished with every row"))
        assert restarted, "the job finished before the restart"
        assert not backwards, backwards[:5]
        assert len(final["results"]) == len(rows) and final["restarts"] == 0
    finally:
        server.stop()
        jobs_redis.kill()
