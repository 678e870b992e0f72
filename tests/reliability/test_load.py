"""Scenario 1 (sustained mixed load) and 2 (overload) against a real uvicorn process."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.reliability.harness import RssSampler, start_server
from tests.reliability.loadgen import LoadRun, mixed_plan, percentile, sequential_reference, verify
from tests.reliability.report import ResultsTable, Row

pytestmark = pytest.mark.reliability
ITEMS = ["item-a", "item-b"]
CONCURRENCY = 32  # the inference pool is one thread: 32 clients keep its queue busy
RSS_GROWTH_BOUND = 40 * 1024 * 1024  # after warm-up; ORT arenas and CPython pools are allowed some slack
REFUSAL_P99_BOUND_MS = 2000
PEAK_RSS_BOUND = 512 * 1024 * 1024  # tiny items: ~130 MiB measured; a queue that grew without bound would not stay here


@pytest.fixture
def server(tiny_artifacts: Path, tmp_path: Path) -> object:
    # No duplicate cache: every answer really goes through trunk and head under load.
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_DUPLICATE_CACHE_ENTRIES": "0"},
                          tmp_path / "server.log")
    yield server
    server.stop()


def test_sustained_mixed_load(server: Server, load_s: float, results_table: ResultsTable) -> None:
    reference = sequential_reference(server.url, ITEMS)
    load = LoadRun(server.url, mixed_plan(ITEMS), CONCURRENCY, load_s)
    warm_up_s = min(3.0, load_s / 4)
    with RssSampler(server.process.pid) as rss:
        calls = load.run()
    verdict = verify(calls, reference)
    growth = rss.growth_after(warm_up_s)
    ok = (verdict.server_errors == 0 and verdict.lost == 0 and verdict.wrong == 0
          and verdict.statuses == {200: verdict.requests} and growth < RSS_GROWTH_BOUND)
    answers = sum(len(call.planned.rows) for call in calls)
    results_table.add(Row("1. sustained mixed load", verdict.requests, verdict.server_errors, verdict.lost,
                          verdict.p99_ms, "pass" if ok else "FAIL",
                          f"{load_s:g} s, {CONCURRENCY} clients, {answers} answers over {len(ITEMS)} items, "
                          f"{verdict.wrong} differ from the sequential run; p50 {verdict.p50_ms:.0f} ms; "
                          f"RSS growth after warm-up {growth / 2**20:.1f} MiB (bound "
                          f"{RSS_GROWTH_BOUND // 2**20} MiB)"))
    assert verdict.requests > 50, "the load generator barely ran"
    assert verdict.statuses == {200: verdict.requests}, verdict.statuses
    assert verdict.lost == 0 and verdict.wrong == 0
    assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 2**20:.1f} MiB after warm-up"


def test_overload_sheds_fast_and_recovers(tiny_artifacts: Path, tmp_path: Path, load_s: float,
                                          results_table: ResultsTable) -> None:
    # A queue of 16 answers against 96 clients sending 1–6 answers each: most must be refused at once.
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_DUPLICATE_CACHE_ENTRIES": "0",
                           "SCORER_MAX_QUEUE_ROWS": "16"}, tmp_path / "server.log")
    try:
        reference = sequential_reference(server.url, ITEMS)
        with RssSampler(server.process.pid) as rss:
            calls = LoadRun(server.url, mixed_plan(ITEMS), 96, max(load_s / 2, 4.0), timeout_s=10).run()
        verdict = verify(calls, reference)
        refused = [call for call in calls if call.status == 429]
        refused_p99 = percentile([call.latency * 1000 for call in refused], 0.99)
        retry_after = {call.retry_after for call in refused}
        bodies = {call.body.get("error_type") for call in refused}
        started = time.perf_counter()
        recovered = httpx.post(f"{server.url}/score/item-a", json={"answer": "after the storm"}, timeout=5)
        recovery_ms = (time.perf_counter() - started) * 1000
        served_p50 = percentile([call.latency * 1000 for call in calls if call.status == 200], 0.5)
        refused_p50 = percentile([call.latency * 1000 for call in refused], 0.5)
        # "Fast": refusals well under the client timeout (10 s) and quicker than answers; the bound leaves room
        # for a 2-core CI machine whose load generator competes with the server for CPU.
        fast = refused_p99 < REFUSAL_P99_BOUND_MS and refused_p50 < served_p50
        ok = (verdict.server_errors == 0 and verdict.lost == 0 and verdict.wrong == 0 and len(refused) > 0
              and set(verdict.statuses) <= {200, 429} and retry_after == {"1"} and fast
              and recovered.status_code == 200 and rss.peak < PEAK_RSS_BOUND)
        results_table.add(Row("2. overload (queue 16 answers, 96 clients)", verdict.requests,
                              verdict.server_errors, verdict.lost, verdict.p99_ms, "pass" if ok else "FAIL",
                              f"{len(refused)} × 429 (Retry-After {','.join(sorted(map(str, retry_after)))}, "
                              f"p50 {refused_p50:.0f} / p99 {refused_p99:.0f} ms), {verdict.statuses.get(200, 0)} × "
                              f"200 all correct (p50 {served_p50:.0f} ms); "
                              f"slowest answer {verdict.max_ms:.0f} ms; peak RSS {rss.peak / 2**20:.0f} MiB (bound "
                              f"{PEAK_RSS_BOUND // 2**20}); "
                              f"first request after the burst 200 in {recovery_ms:.0f} ms"))
        assert refused, "the queue bound never refused anything"
        assert set(verdict.statuses) <= {200, 429}, verdict.statuses
        assert retry_after == {"1"} and bodies == {"overloaded"}
        assert fast, f"429s slow (p50 {refused_p50:.0f}, p99 {refused_p99:.0f} ms; 200s p50 {served_p50:.0f} ms)"
        assert verdict.max_ms < 10_000 and verdict.lost == 0 and verdict.wrong == 0
        assert recovered.status_code == 200 and recovery_ms < 2000
        assert rss.peak < PEAK_RSS_BOUND, f"peak RSS {rss.peak / 2**20:.0f} MiB under overload"
    finally:
        server.stop()
