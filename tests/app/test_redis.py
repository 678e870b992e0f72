"""Redis mode against a real redis-server: shared duplicate cache and jobs, and Redis going away."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.fake_backend import FakeBackend

pytestmark = pytest.mark.redis


def make_client(redis_url: str, backend: FakeBackend) -> TestClient:
    settings = Settings(artifacts="unused", redis_url=redis_url)  # type: ignore[arg-type]
    return TestClient(create_app(settings, lambda _: backend))  # type: ignore[arg-type]


def test_duplicate_cache_is_shared_between_replicas(redis_url: str) -> None:
    first_backend, second_backend = FakeBackend(), FakeBackend()
    with make_client(redis_url, first_backend) as first, make_client(redis_url, second_backend) as second:
        a = first.post("/score/item-a", json={"answer": "shared answer"}).json()
        b = second.post("/score/item-a", json={"answer": "shared   answer"}).json()  # same ids, other spacing
    assert a == b
    assert sum(first_backend.calls) == 1 and sum(second_backend.calls) == 0


def test_job_created_on_one_replica_is_read_on_another(redis_url: str) -> None:
    with make_client(redis_url, FakeBackend()) as first, make_client(redis_url, FakeBackend()) as second:
        rows = [{"id": str(n), "item_id": "item-b", "answer": "a b"} for n in range(10)]
        job_id = first.post("/jobs", json={"answers": rows}).json()["job_id"]
        for _ in range(100):
            status = second.get(f"/jobs/{job_id}").json()
            if status["status"] == "done":
                break
            time.sleep(0.02)
        assert status["status"] == "done" and [r["score"] for r in status["results"]] == [2] * 10


def test_scoring_goes_on_when_redis_is_down() -> None:
    # Nothing listens on this port: every Redis call fails, scoring must not.
    with make_client("redis://127.0.0.1:1/0", FakeBackend()) as client:
        response = client.post("/score/item-a", json={"answer": "still scored"})
        assert response.status_code == 200 and response.json()["score"] == 2
        assert "scorer_redis_errors_total" in client.get("/metrics/").text
