"""End to end through a real uvicorn process, real ONNX Runtime sessions and real HTTP."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server


@pytest.fixture
def tiny_server(tiny_artifacts: Path, tmp_path: Path) -> object:
    server = Server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_BATCH_WAIT_MS": "5"},
                    tmp_path / "server.log")
    server.wait_ready()
    yield server
    server.stop()


def test_tiny_model_over_http(tiny_server: Server) -> None:
    url = tiny_server.url
    single = httpx.post(f"{url}/score/item-a", json={"answer": "acid rain reacts with marble"}).json()
    assert single["adapter_version"] == "v1" and len(single["probabilities"]) == 3
    assert sum(single["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    long_answer = httpx.post(f"{url}/score/item-a", json={"answer": "word " * 500}).json()
    assert long_answer["truncated"] is True and single["truncated"] is False
    assert httpx.post(f"{url}/score/item-z", json={"answer": "x"}).status_code == 404
    answers = [f"answer number {n} about acid rain" + " and marble" * (n % 5) for n in range(40)]
    sequential = [httpx.post(f"{url}/score/item-{'ab'[n % 2]}", json={"answer": a}).json()
                  for n, a in enumerate(answers)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        concurrent_results = list(pool.map(
            lambda pair: httpx.post(f"{url}/score/item-{'ab'[pair[0] % 2]}", json={"answer": pair[1]}).json(),
            enumerate(answers)))
    for one, other in zip(sequential, concurrent_results, strict=True):
        assert one["score"] == other["score"]
        assert one["probabilities"] == pytest.approx(other["probabilities"], abs=1e-5)
    batch = httpx.post(f"{url}/batch", json={"answers": [
        {"id": n, "item_id": f"item-{'ab'[n % 2]}", "answer": a} for n, a in enumerate(answers)]}).json()
    assert [r["score"] for r in batch["results"]] == [r["score"] for r in sequential]
    metrics = httpx.get(f"{url}/metrics/").text
    assert 'scorer_stage_duration_seconds_count{stage="trunk"}' in metrics
    assert 'scorer_head_cache_events_total{event="miss"} 2.0' in metrics
    assert "marble" not in tiny_server.log_path.read_text()


def test_corrupt_head_fails_only_its_item(tiny_artifacts: Path, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, artifacts)
    manifest = json.loads((artifacts / "manifest.json").read_text())
    (artifacts / manifest["items"]["item-b"]["file"]).write_bytes(b"not an adapter")
    server = Server({"SCORER_ARTIFACTS": str(artifacts)}, tmp_path / "server.log")
    try:
        server.wait_ready()
        broken = httpx.post(f"{server.url}/score/item-b", json={"answer": "x y"})
        assert broken.status_code == 503 and broken.json()["error_type"] == "item_unavailable"
        assert httpx.post(f"{server.url}/score/item-a", json={"answer": "x y"}).status_code == 200
    finally:
        server.stop()


def test_refuses_public_bind_without_keys(tiny_artifacts: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_HOST": "0.0.0.0"}
    done = subprocess.run([sys.executable, "-m", "app"], env=env, capture_output=True, timeout=60, text=True)
    assert done.returncode == 2 and "without API keys" in done.stderr


def test_sigterm_finishes_requests_in_flight(tiny_artifacts: Path, tmp_path: Path) -> None:
    import signal
    import threading
    import time

    server = Server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_DUPLICATE_CACHE_ENTRIES": "0",
                     "SCORER_MAX_ANSWERS_PER_REQUEST": "8000", "SCORER_MAX_BODY_BYTES": "20000000",
                     "SCORER_MAX_QUEUE_ROWS": "10000"},
                    tmp_path / "server.log")
    server.wait_ready()
    answers = [f"answer {n} " + "about acid rain and marble " * (n % 20) for n in range(8000)]
    outcome: dict[str, object] = {}
    finished: list[float] = []

    def big_request() -> None:
        response = httpx.post(f"{server.url}/score/item-a", json={"answers": answers}, timeout=60)
        outcome["status"], outcome["count"] = response.status_code, len(response.json()["results"])
        finished.append(time.perf_counter())

    thread = threading.Thread(target=big_request)
    thread.start()
    time.sleep(0.3)  # the request is in flight
    server.process.send_signal(signal.SIGTERM)
    signalled = time.perf_counter()
    thread.join(timeout=60)
    assert finished and finished[0] > signalled  # it really was in flight when the signal came
    assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal on exit
    assert outcome == {"status": 200, "count": 8000}
