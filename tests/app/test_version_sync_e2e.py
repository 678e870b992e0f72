"""Two real uvicorn replicas sharing a redis-server and an artifact folder: a reload on one reaches the other.

No restart, and the periodic resync is set to an hour, so the switch can only have come through pub/sub. A
third replica started after a rollback serves the rolled-back version although the manifest on disk names
the newer one: it read the versions recorded in Redis.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from export.pipeline import ExportOptions, export_all
from tests.conftest import Server, tiny_item
from training.pipeline import train_adapter
from training.trainer import TrainConfig

pytestmark = pytest.mark.redis
ANSWER = {"answer": "acid rain reacts with marble 3"}


def score(server: Server) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/score/item-a", json=ANSWER, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_version(server: Server, version: str, timeout: float = 5.0) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    body = score(server)
    while body["adapter_version"] != version and time.perf_counter() - started < timeout:
        time.sleep(0.05)
        body = score(server)
    return body, time.perf_counter() - started


def test_reload_on_one_replica_reaches_the_other(tiny_backbone: Path, redis_url: str, tmp_path: Path) -> None:
    adapters, artifacts = tmp_path / "adapters", tmp_path / "onnx"
    first = TrainConfig(split_layer=1, max_epochs=2, batch_size=8, seed=1, learning_rate=5e-3)
    train_adapter(tiny_item("item-a"), adapters, first, str(tiny_backbone))
    export_all(ExportOptions(adapters, artifacts, backbone=str(tiny_backbone), log=lambda _: None))
    env = {"SCORER_ARTIFACTS": str(artifacts), "SCORER_REDIS_URL": redis_url, "SCORER_VERSION_RESYNC_S": "3600"}
    servers = [Server(env, tmp_path / f"replica-{name}.log") for name in "ab"]
    try:
        a, b = servers
        for server in servers:
            server.wait_ready()
        before = score(b)  # also puts the v1 result into the shared duplicate cache
        assert before["adapter_version"] == "v1"

        retrained = TrainConfig(split_layer=1, max_epochs=3, batch_size=8, seed=7, learning_rate=2e-2)
        train_adapter(tiny_item("item-a"), adapters, retrained, str(tiny_backbone))
        export_all(ExportOptions(adapters, artifacts, backbone=str(tiny_backbone), log=lambda _: None))
        assert score(b)["adapter_version"] == "v1"  # exported is not served until someone reloads

        reloaded = httpx.post(f"{a.url}/admin/items/item-a/reload", timeout=60)
        assert reloaded.status_code == 200 and reloaded.json()["adapter_version"] == "v2"
        after, waited = wait_for_version(b, "v2")
        assert after["adapter_version"] == "v2", f"replica b still on v1 after {waited:.1f} s"
        # v2's own numbers, not the cached v1 result for the same answer
        assert after["probabilities"] != before["probabilities"]
        assert after == score(a)
        assert "switched to v2 (announced through redis)" in b.log_path.read_text()

        assert httpx.post(f"{a.url}/admin/items/item-a/rollback").json()["adapter_version"] == "v1"
        rolled, _ = wait_for_version(b, "v1")
        assert rolled["adapter_version"] == "v1" and rolled["probabilities"] == before["probabilities"]

        late = Server(env, tmp_path / "replica-c.log")  # the manifest on disk says v2
        servers.append(late)
        late.wait_ready()
        assert score(late)["adapter_version"] == "v1"
        assert b.process.poll() is None and a.process.poll() is None  # nobody restarted
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp_path, ignore_errors=True)
