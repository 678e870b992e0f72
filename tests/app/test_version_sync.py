"""Item versions shared through Redis between in-process replicas (fake backends, real redis-server).

The fake backends serve no files, but the replicas read the export manifest's item versions (the basis of a
switch) from disk: each test writes a minimal manifest.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from app.version_sync import VERSIONS_KEY
from tests.fake_backend import FakeBackend

pytestmark = pytest.mark.redis


def write_manifest(folder: Path, **versions: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    items = {item_id.replace("_", "-"): {"version": version} for item_id, version in versions.items()}
    (folder / "manifest.json").write_text(json.dumps({"items": items}))
    return folder


def make_client(redis_url: str, backend: FakeBackend, artifacts: Path, resync_s: float = 3600) -> TestClient:
    settings = Settings(artifacts=artifacts, redis_url=redis_url, version_resync_s=resync_s)
    return TestClient(create_app(settings, lambda _: backend))


def wait_version(client: TestClient, item_id: str, version: str, timeout: float = 5.0) -> str:
    deadline = time.time() + timeout
    seen = ""
    while time.time() < deadline:
        seen = client.get(f"/items/{item_id}").json()["adapter_version"]
        if seen == version:
            break
        time.sleep(0.05)
    return seen


def record(version: str, basis: str) -> str:
    return json.dumps({"version": version, "basis": basis})


def test_reload_and_rollback_reach_the_other_replica(redis_url: str, tmp_path: Path) -> None:
    shared = write_manifest(tmp_path, item_a="v1", item_b="v1")
    first_backend, second_backend = FakeBackend(), FakeBackend()
    with make_client(redis_url, first_backend, shared) as first, \
            make_client(redis_url, second_backend, shared) as second:
        assert second.post("/score/item-a", json={"answer": "one two"}).json()["adapter_version"] == "v1"
        assert first.post("/admin/items/item-a/reload").json()["adapter_version"] == "v2"
        assert wait_version(second, "item-a", "v2") == "v2"  # resync is an hour away: this came by pub/sub
        # the duplicate cache holds this answer's v1 result; the second replica must not return it
        again = second.post("/score/item-a", json={"answer": "one two"}).json()
        assert again["adapter_version"] == "v2"
        assert first.post("/admin/items/item-a/rollback").json()["adapter_version"] == "v1"
        assert wait_version(second, "item-a", "v1") == "v1"
        assert second_backend.items()["item-b"].version == "v1"  # other items untouched
    recorded = redis.Redis.from_url(redis_url).hgetall(VERSIONS_KEY)
    assert recorded == {b"item-a": record("v1", "v1").encode()}


def test_a_replica_started_later_adopts_recorded_versions(redis_url: str, tmp_path: Path) -> None:
    redis.Redis.from_url(redis_url).hset(VERSIONS_KEY, mapping={
        "item-a": record("v3", "v1"),  # switched while the manifest named v1, as it still does here
        "item-b": record("v4", "v1"),  # this replica's manifest has v2: exported again since, the export wins
        "gone-item": record("v9", "v9"),  # not served here at all
    })
    with make_client(redis_url, FakeBackend(), write_manifest(tmp_path, item_a="v1", item_b="v2")) as client:
        # decided before the first request is answered
        assert client.get("/items/item-a").json()["adapter_version"] == "v3"
        assert client.get("/items/item-b").json()["adapter_version"] == "v1"


def test_periodic_resync_catches_a_missed_message(redis_url: str, tmp_path: Path) -> None:
    with make_client(redis_url, FakeBackend(), write_manifest(tmp_path, item_a="v1"), resync_s=0.2) as client:
        # written without a publish, as if the message had been lost
        redis.Redis.from_url(redis_url).hset(VERSIONS_KEY, "item-a", record("v5", "v1"))
        assert wait_version(client, "item-a", "v5") == "v5"


def test_reload_succeeds_locally_when_redis_is_down(tmp_path: Path) -> None:
    with make_client("redis://127.0.0.1:1/0", FakeBackend(), write_manifest(tmp_path, item_a="v1")) as client:
        response = client.post("/admin/items/item-a/reload")
        assert response.status_code == 200 and response.json()["adapter_version"] == "v2"
