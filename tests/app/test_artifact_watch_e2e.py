"""SCORER_WATCH_ARTIFACTS_S: a running uvicorn process serves what an export adds or changes, no admin call."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx

from export.pipeline import ExportOptions, export_all
from tests.conftest import Server, tiny_item
from training.pipeline import train_adapter
from training.trainer import TrainConfig


def version_of(server: Server, item_id: str) -> str | None:
    response = httpx.get(f"{server.url}/items/{item_id}", timeout=10)
    return response.json()["adapter_version"] if response.status_code == 200 else None


def wait_for(server: Server, item_id: str, version: str, timeout: float = 10.0) -> str | None:
    deadline = time.time() + timeout
    seen = version_of(server, item_id)
    while seen != version and time.time() < deadline:
        time.sleep(0.1)
        seen = version_of(server, item_id)
    return seen


def test_exports_are_picked_up_and_rollbacks_respected(tiny_backbone: Path, tmp_path: Path) -> None:
    adapters, artifacts = tmp_path / "adapters", tmp_path / "onnx"

    def train_and_export(item_id: str, seed: int) -> None:
        config = TrainConfig(split_layer=1, max_epochs=2, batch_size=8, seed=seed, learning_rate=2e-2)
        train_adapter(tiny_item(item_id), adapters, config, str(tiny_backbone))
        export_all(ExportOptions(adapters, artifacts, backbone=str(tiny_backbone), log=lambda _: None))

    train_and_export("item-a", 1)
    server = Server({"SCORER_ARTIFACTS": str(artifacts), "SCORER_WATCH_ARTIFACTS_S": "0.2"},
                    tmp_path / "server.log")
    try:
        server.wait_ready()
        assert version_of(server, "item-a") == "v1" and version_of(server, "item-b") is None

        train_and_export("item-a", 7)  # retrained: v2
        assert wait_for(server, "item-a", "v2") == "v2"
        assert httpx.post(f"{server.url}/score/item-a", json={"answer": "idk"}).json()["adapter_version"] == "v2"

        assert httpx.post(f"{server.url}/admin/items/item-a/rollback").json()["adapter_version"] == "v1"
        train_and_export("item-b", 2)  # a new item; item-a's manifest entry is unchanged (still v2)
        assert wait_for(server, "item-b", "v1") == "v1"
        scored = httpx.post(f"{server.url}/score/item-b", json={"answer": "idk"})
        assert scored.status_code == 200 and scored.json()["adapter_version"] == "v1"
        assert version_of(server, "item-a") == "v1"  # the rollback was not undone by an unrelated export
    finally:
        server.stop()
        shutil.rmtree(tmp_path, ignore_errors=True)
