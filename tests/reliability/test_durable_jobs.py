"""Scenario 7: accepted jobs are never lost to the Redis they live in — not to eviction by scoring traffic,
not to a Redis restart — and a job store that would evict them is refused at start-up."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.reliability.harness import JOB_STORE, RedisProcess, start_server
from tests.reliability.report import ResultsTable, Row
from tests.reliability.test_faults import job_rows, poll_job

pytestmark = [pytest.mark.reliability, pytest.mark.redis]
EVICTING_CACHE = ("--save", "", "--appendonly", "no", "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru")


def test_scoring_traffic_cannot_evict_a_job(tiny_artifacts: Path, tmp_path: Path,
                                            results_table: ResultsTable) -> None:
    cache, jobs = RedisProcess(EVICTING_CACHE), RedisProcess(JOB_STORE, tmp_path)
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_REDIS_URL": cache.url,
                           "SCORER_JOB_REDIS_URL": jobs.url}, tmp_path / "server.log")
    try:
        job_id = httpx.post(f"{server.url}/jobs", json={"answers": job_rows(20, "kept")}, timeout=30).json()["job_id"]
        assert poll_job(server.url, job_id, ("done",), 30)["status"] == "done"
        scored = 0
        for batch in range(40):  # unique answers: every one is a new duplicate-cache entry
            rows = [{"id": n, "item_id": "item-a", "answer": f"traffic {batch} {n} " + "acid rain " * 20}
                    for n in range(250)]
            response = httpx.post(f"{server.url}/batch", json={"answers": rows}, timeout=60)
            assert response.status_code == 200
            scored += len(rows)
        evicted = int(cache.client().info("stats")["evicted_keys"])
        after = httpx.get(f"{server.url}/jobs/{job_id}", timeout=10)
        ok = evicted > 0 and after.status_code == 200 and len(after.json()["results"]) == 20
        results_table.add(Row("7a. job store: eviction pressure from scoring traffic", scored // 250 + 2, 0,
                              0 if ok else 1, float("nan"), "pass" if ok else "FAIL",
                              f"{scored} unique answers through a 2 MB allkeys-lru cache Redis evicted {evicted} "
                              f"cache keys; the finished job, in its own noeviction Redis, still "
                              f"{after.status_code} with all {len(after.json().get('results') or [])} rows"))
        assert evicted > 0, "the cache never filled: the scenario proves nothing"
        assert after.status_code == 200 and len(after.json()["results"]) == 20
    finally:
        server.stop()
        cache.kill()
        jobs.kill()


def test_jobs_survive_a_job_redis_restart(tiny_artifacts: Path, tmp_path: Path,
                                          results_table: ResultsTable) -> None:
    jobs = RedisProcess(JOB_STORE, tmp_path)
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_REDIS_URL": jobs.url,
                           "SCORER_MAX_RUNNING_JOBS": "1", "SCORER_DUPLICATE_CACHE_ENTRIES": "0"},
                          tmp_path / "server.log")
    try:
        running = httpx.post(f"{server.url}/jobs", json={"answers": job_rows(3000, "first")}, timeout=30).json()
        waiting = httpx.post(f"{server.url}/jobs", json={"answers": job_rows(40, "second")}, timeout=30).json()
        assert poll_job(server.url, running["job_id"], ("running",), 10)
        assert httpx.get(f"{server.url}/jobs/{waiting['job_id']}").json()["status"] == "queued"
        jobs.kill()  # SIGKILL: no shutdown save; only what the append-only file already holds survives
        time.sleep(1.0)
        jobs.start()
        # The queued job was written once, at acceptance, before the crash: it is back from the AOF.
        kept = bool(jobs.client().exists(f"scorer:job:{waiting['job_id']}"))
        first = poll_job(server.url, running["job_id"], ("done", "failed"), 120)
        second = poll_job(server.url, waiting["job_id"], ("done", "failed"), 60)
        ok = kept and first["status"] == second["status"] == "done" and len(second["results"]) == 40
        results_table.add(Row("7b. job Redis SIGKILLed (AOF, appendfsync always) and restarted", 2, 0,
                              0 if ok else 1, float("nan"), "pass" if ok else "FAIL",
                              f"one job running (3000 rows), one queued (40 rows) at the kill; the queued job's "
                              f"record {'came back' if kept else 'was LOST'} from the AOF; the running one "
                              f"went on (`{first['status']}`), then the queued one ran (`{second['status']}`)"))
        assert kept and first["status"] == "done" and len(first["results"]) == 3000
        assert second["status"] == "done" and len(second["results"]) == 40
    finally:
        server.stop()
        jobs.kill()


def test_an_evicting_job_store_is_refused_at_start(tiny_artifacts: Path, tmp_path: Path,
                                                   results_table: ResultsTable) -> None:
    cache = RedisProcess(EVICTING_CACHE)
    log_path = tmp_path / "server.log"
    server = Server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_REDIS_URL": cache.url}, log_path)
    try:
        code = server.process.wait(timeout=60)
        log = log_path.read_text()
        ok = code != 0 and "evicts keys" in log and "SCORER_JOB_REDIS_URL" in log
        results_table.add(Row("7c. evicting job store refused at start-up", 1, 0, 0, float("nan"),
                              "pass" if ok else "FAIL",
                              f"SCORER_REDIS_URL alone, pointing at an allkeys-lru Redis: exit code {code}, the log "
                              "names the policy and SCORER_JOB_REDIS_URL"))
        assert ok, log[-2000:]
    finally:
        if server.process.poll() is None:
            server.stop()
        cache.kill()
