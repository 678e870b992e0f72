"""HTTP contract against the fake backend: shapes, error table, batching, limits, auth, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.security import key_digest
from app.settings import Settings
from tests.fake_backend import FakeBackend


def make_client(backend: FakeBackend | None = None, **overrides: object) -> TestClient:
    backend = backend or FakeBackend()
    settings = Settings(artifacts="unused", **overrides)  # type: ignore[arg-type]
    return TestClient(create_app(settings, lambda _: backend))  # type: ignore[arg-type]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_client() as test_client:
        yield test_client


def assert_error(response: object, status: int, error_type: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type


def test_score_one_and_many(client: TestClient) -> None:
    one = client.post("/score/item-a", json={"answer": "two words"})
    assert one.status_code == 200
    body = one.json()
    assert body["score"] == 2 and body["item_id"] == "item-a" and body["adapter_version"] == "v1"
    assert len(body["probabilities"]) == 3 and body["confidence"] == pytest.approx(0.8)
    assert "x-inference-time" in one.headers
    many = client.post("/score/item-b", json={"answers": ["a", "a b c", "a b"]})
    assert [r["score"] for r in many.json()["results"]] == [1, 3, 2]


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type"),
    [
        ("/score/nope", {"answer": "x"}, 404, "unknown_item"),
        ("/score/..%2F..%2Fetc", {"answer": "x"}, 404, "not_found"),
        ("/score/Bad.Id", {"answer": "x"}, 404, "unknown_item"),
        ("/score/item-a", {"answer": ""}, 422, "validation"),
        ("/score/item-a", {"answer": "   "}, 422, "validation"),
        ("/score/item-a", {"answer": 5}, 422, "validation"),
        ("/score/item-a", {"answers": "not a list"}, 422, "validation"),
        ("/score/item-a", {}, 422, "validation"),
        ("/score/item-a", {"answer": "x", "answers": ["y"]}, 422, "validation"),
        ("/score/broken-item", {"answer": "x"}, 503, "item_unavailable"),
    ],
)
def test_errors_have_one_shape(path: str, body: object, status: int, error_type: str) -> None:
    backend = FakeBackend()
    from tests.fake_backend import fake_spec

    backend._items["broken-item"] = fake_spec("broken-item")
    with make_client(backend) as client:
        assert_error(client.post(path, json=body), status, error_type)


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/score/item-a", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 422, "validation")


def test_body_over_limit_is_413() -> None:
    with make_client(max_body_bytes=1000) as client:
        assert_error(client.post("/score/item-a", json={"answer": "x" * 2000}), 413, "payload_too_large")
        assert client.post("/score/item-a", json={"answer": "fine"}).status_code == 200


def test_batch_rows_fail_alone_and_keep_order(client: TestClient) -> None:
    rows = [
        {"id": "r1", "item_id": "item-a", "answer": "one"},
        {"id": "r2", "item_id": "missing", "answer": "one"},
        {"id": "r3", "item_id": "item-b", "answer": ""},
        {"id": 4, "item_id": "item-b", "answer": "a b c"},
        {"id": "r5", "item_id": "item-a", "answer": ["wrong", "type"]},
    ]
    results = client.post("/batch", json={"answers": rows}).json()["results"]
    assert [r["id"] for r in results] == ["r1", "r2", "r3", 4, "r5"]
    assert results[0]["score"] == 1 and results[3]["score"] == 3
    assert results[1]["error_type"] == "unknown_item"
    assert results[2]["error_type"] == results[4]["error_type"] == "validation"


def test_batch_limit() -> None:
    with make_client(max_answers_per_request=3) as client:
        rows = [{"id": str(n), "item_id": "item-a", "answer": "x"} for n in range(4)]
        assert_error(client.post("/batch", json={"answers": rows}), 413, "payload_too_large")


def test_concurrent_requests_share_trunk_runs() -> None:
    backend = FakeBackend()

    async def fire() -> None:
        import httpx

        app = create_app(Settings(artifacts="unused", batch_wait_ms=20), lambda _: backend)  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                responses = await asyncio.gather(*[
                    http.post(f"/score/item-{'ab'[n % 2]}", json={"answer": "w " * (n % 3 + 1)}) for n in range(20)])
        assert all(r.status_code == 200 for r in responses)
        assert [r.json()["score"] for r in responses] == [min(n % 3 + 1, 2 if n % 2 == 0 else 3) for n in range(20)]

    asyncio.run(fire())
    assert sum(backend.calls) == 20 and len(backend.calls) < 20  # gathered into fewer backend calls


def test_duplicate_answers_are_served_from_cache() -> None:
    """Answers the item's tokenizer maps to the same ids share a score; answers it tells apart never do (the
    fake tokenizer is cased and splits on whitespace, like a cased model's)."""
    backend = FakeBackend()
    with make_client(backend) as client:
        first = client.post("/score/item-a", json={"answer": "Same  Answer"}).json()
        second = client.post("/score/item-a", json={"answer": "Same Answer "}).json()
        assert first == second and sum(backend.calls) == 1
        client.post("/score/item-a", json={"answer": "same answer"})
        assert sum(backend.calls) == 2  # another case is other ids: scored, not taken from the cache


def test_overload_is_a_fast_429() -> None:
    with make_client(max_queue_rows=2, max_answers_per_request=10) as client:
        client.app.state.batcher.queued_rows = 2  # type: ignore[attr-defined]  # as if two answers were waiting
        response = client.post("/score/item-a", json={"answers": ["a", "b"]}, headers={"x-request-id": "r-1"})
        assert_error(response, 429, "overloaded")
        assert response.headers["retry-after"] == "1" and response.headers["x-request-id"] == "r-1"


@pytest.mark.parametrize("path", ["/score/item-a", "/batch"])
def test_request_larger_than_the_queue_is_413_not_an_endless_429(path: str) -> None:
    """An idle server: three answers can never fit a two-answer queue, so retrying would never help."""
    with make_client(max_queue_rows=2, max_answers_per_request=10) as client:
        body = ({"answers": ["a", "b", "c"]} if path.startswith("/score") else
                {"answers": [{"id": n, "item_id": "item-a", "answer": "a"} for n in range(3)]})
        response = client.post(path, json=body)
        assert_error(response, 413, "payload_too_large")
        assert "POST /jobs" in response.json()["error"]
        assert client.post(path, json={"answers": body["answers"][:2]}).status_code == 200


def test_jobs_finish_with_results(client: TestClient) -> None:
    rows = [{"id": str(n), "item_id": "item-a", "answer": "w " * n or "x"} for n in range(1, 300)]
    accepted = client.post("/jobs", json={"answers": rows})
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]
    for _ in range(100):
        status = client.get(f"/jobs/{job_id}").json()
        if status["status"] == "done":
            break
        time.sleep(0.02)
    assert status["status"] == "done" and status["done"] == status["total"] == 299
    assert [r["id"] for r in status["results"]] == [str(n) for n in range(1, 300)]
    assert_error(client.get("/jobs/unknown"), 404, "job_not_found")


def test_items_and_health(client: TestClient) -> None:
    items = client.get("/items").json()
    assert [i["item_id"] for i in items] == ["item-a", "item-b"]
    assert items[1]["score_range"] == [0, 3] and items[0]["evaluation"]["test_qwk"] == 0.9
    assert client.get("/items/item-b").json()["adapter_version"] == "v1"
    assert_error(client.get("/items/zzz"), 404, "unknown_item")
    assert client.get("/health/live").json() == {"status": "live"}
    assert client.get("/health/ready").status_code == 200


def test_api_keys() -> None:
    settings = {"api_keys_sha256": [key_digest("score-key")], "admin_keys_sha256": [key_digest("admin-key")]}
    with make_client(**settings) as client:
        assert_error(client.post("/score/item-a", json={"answer": "x"}), 401, "unauthorized")
        bad = {"Authorization": "Bearer wrong"}
        assert_error(client.post("/score/item-a", json={"answer": "x"}, headers=bad), 401, "unauthorized")
        good = {"Authorization": "Bearer score-key"}
        assert client.post("/score/item-a", json={"answer": "x"}, headers=good).status_code == 200
        assert client.get("/health/live").status_code == 200  # probes need no key


def _not_found_count(text: str) -> float:
    import re

    pattern = r'scorer_request_duration_seconds_count\{endpoint="/score/\{item_id\}",status="404"\} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_metrics_labels_stay_bounded(client: TestClient) -> None:
    before = _not_found_count(client.get("/metrics/").text)
    for n in range(30):
        client.post(f"/score/random-{n}", json={"answer": "secret canary answer"})
    text = client.get("/metrics/").text
    assert "random-" not in text and "canary" not in text
    assert _not_found_count(text) - before == 30


def test_admin_reload_and_rollback_need_an_admin_key() -> None:
    settings = {"api_keys_sha256": [key_digest("score-key")], "admin_keys_sha256": [key_digest("admin-key")]}
    with make_client(**settings) as client:
        scorer, admin = {"Authorization": "Bearer score-key"}, {"Authorization": "Bearer admin-key"}
        assert_error(client.post("/admin/items/item-a/reload"), 401, "unauthorized")
        assert_error(client.post("/admin/items/item-a/reload", headers=scorer), 403, "forbidden")
        reloaded = client.post("/admin/items/item-a/reload", headers=admin).json()
        assert reloaded["adapter_version"] == "v2"
        scored = client.post("/score/item-a", json={"answer": "x"}, headers=scorer).json()
        assert scored["adapter_version"] == "v2"
        assert client.post("/admin/items/item-a/rollback", headers=admin).json()["adapter_version"] == "v1"
        assert_error(client.post("/admin/items/nope/reload", headers=admin), 404, "unknown_item")


def test_operator_pages_follow_the_access_settings() -> None:
    keys = {"api_keys_sha256": [key_digest("k")]}
    auth = {"Authorization": "Bearer k"}
    with make_client(**keys) as closed:  # type: ignore[arg-type]
        assert_error(closed.get("/openapi.json"), 401, "unauthorized")
        assert closed.get("/openapi.json", headers=auth).status_code == 200
        assert closed.get("/metrics/").status_code == 200  # open by default: scrapers carry no key
    with make_client(open_docs=True, open_metrics=False, **keys) as flipped:  # type: ignore[arg-type]
        assert flipped.get("/docs").status_code == 200
        assert_error(flipped.get("/metrics/"), 401, "unauthorized")
        assert flipped.get("/metrics/", headers=auth).status_code == 200
