"""Hot reload and rollback of a retrained item in a running uvicorn process, under load."""

from __future__ import annotations

import concurrent.futures
import shutil
import threading
from pathlib import Path

import httpx

from export.pipeline import ExportOptions, export_all
from tests.conftest import Server, tiny_item
from training.pipeline import train_adapter
from training.trainer import TrainConfig


def test_reload_under_load_then_rollback(tiny_backbone: Path, tmp_path: Path) -> None:
    adapters, artifacts = tmp_path / "adapters", tmp_path / "onnx"
    first = TrainConfig(split_layer=1, max_epochs=2, batch_size=8, seed=1, learning_rate=5e-3)
    train_adapter(tiny_item("item-a"), adapters, first, str(tiny_backbone))
    export_all(ExportOptions(adapters, artifacts, backbone=str(tiny_backbone), log=lambda _: None))
    server = Server({"SCORER_ARTIFACTS": str(artifacts)}, tmp_path / "server.log")
    try:
        server.wait_ready()
        answer = {"answer": "acid rain reacts with marble 3"}
        before = httpx.post(f"{server.url}/score/item-a", json=answer).json()
        assert before["adapter_version"] == "v1"

        retrained = TrainConfig(split_layer=1, max_epochs=3, batch_size=8, seed=7, learning_rate=2e-2)
        train_adapter(tiny_item("item-a"), adapters, retrained, str(tiny_backbone))
        export_all(ExportOptions(adapters, artifacts, backbone=str(tiny_backbone), log=lambda _: None))

        stop = threading.Event()

        def hammer() -> list[int]:
            statuses = []
            with httpx.Client() as http:
                while not stop.is_set():
                    statuses.append(http.post(f"{server.url}/score/item-a", json=answer).status_code)
            return statuses

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            loads = [pool.submit(hammer) for _ in range(4)]
            reloaded = httpx.post(f"{server.url}/admin/items/item-a/reload", timeout=60)
            stop.set()
            statuses = [status for load in loads for status in load.result()]
        assert reloaded.status_code == 200 and reloaded.json()["adapter_version"] == "v2"
        assert statuses and set(statuses) == {200}  # nothing lost while the head was swapped

        after = httpx.post(f"{server.url}/score/item-a", json=answer).json()
        assert after["adapter_version"] == "v2" and after["probabilities"] != before["probabilities"]
        rolled = httpx.post(f"{server.url}/admin/items/item-a/rollback").json()
        assert rolled["adapter_version"] == "v1"
        again = httpx.post(f"{server.url}/score/item-a", json=answer).json()
        assert again["adapter_version"] == "v1" and again["probabilities"] == before["probabilities"]
    finally:
        server.stop()
        shutil.rmtree(tmp_path, ignore_errors=True)
