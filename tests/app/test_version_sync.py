"""Item versions shared through Redis between in-process replicas (fake backends, real redis-server)."""

from __future__ import annotations

import time

import pytest
import redis
from fastapi.testclient import TestClient

from app.fake_backend import FakeBackend
from app.main import create_app
from app.settings import Settings
from app.version_sync import VERSIONS_KEY

pytestmark = pytest.mark.redis


def make_client(redis_url: str, backend: FakeBackend, resync_s: float = 3600) -> TestClient:
    settings = Settings(artifacts="unused", redis_url=redis_url, version_resync_s=resync_s)  # type: ignore[arg-type]
    return TestClient(create_app(settings, lambda _: backend))  # type: ignore[arg-type]


def wait_version(client: TestClient, item_id: str, version: str, timeout: float = 5.0) -> str:
    deadline = time.time() + timeout
    seen = ""
    while time.time() < deadline:
        seen = client.get(f"/items/{item_id}").json()["adapter_version"]
        if seen == version:
            break
        time.sleep(0.05)
    return seen


def test_reload_and_rollback_reach_the_other_replica(redis_url: str) -> None:
    first_backend, second_backend = FakeBackend(), FakeBackend()
    with make_client(redis_url, first_backend) as first, make_client(redis_url, second_backend) as second:
        assert second.post("/score/item-a", json={"answer": "one two"}).json()["adapter_version"] == "v1"
        assert first.post("/admin/items/item-a/reload").json()["adapter_version"] == "v2"
        assert wait_version(second, "item-a", "v2") == "v2"  # resync is an hour away: this came by pub/sub
        # the duplicate cache holds this answer's v1 result; the second replica must not return it
        again = second.post("/score/item-a", json={"answer": "one two"}).json()
        assert again["adapter_version"] == "v2"
        assert first.post("/admin/items/item-a/rollback").json()["adapter_version"] == "v1"
        assert wait_version(second, "item-a", "v1") == "v1"
        assert second_backend.items()["item-b"].version == "v1"  # other items untouched
    assert redis.Redis.from_url(redis_url).hgetall(VERSIONS_KEY) == {b"item-a": b"v1"}


def test_a_replica_started_later_adopts_recorded_versions(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).hset(VERSIONS_KEY, mapping={"item-b": "v3", "gone-item": "v9"})
    backend = FakeBackend()
    with make_client(redis_url, backend) as client:
        # adopted before the first request; an item this replica does not have is skipped
        assert client.get("/items/item-b").json()["adapter_version"] == "v3"
        assert client.get("/items/item-a").json()["adapter_version"] == "v1"


def test_periodic_resync_catches_a_missed_message(redis_url: str) -> None:
    with make_client(redis_url, FakeBackend(), resync_s=0.2) as client:
        # written without a publish, as if the message had been lost
        redis.Redis.from_url(redis_url).hset(VERSIONS_KEY, "item-a", "v5")
        assert wait_version(client, "item-a", "v5") == "v5"


def test_reload_succeeds_locally_when_redis_is_down() -> None:
    with make_client("redis://127.0.0.1:1/0", FakeBackend()) as client:
        response = client.post("/admin/items/item-a/reload")
        assert response.status_code == 200 and response.json()["adapter_version"] == "v2"
