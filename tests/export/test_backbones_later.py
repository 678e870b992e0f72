"""The serve path of `make serve`: one backbone exported first with the golden-answer check, served at
once, the other backbone's items listed as `preparing` and then added, trunk and all, without a restart;
a later full export upgrades golden-checked heads to the full check."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from export.pipeline import ExportOptions, export_all
from tests.conftest import Server, tiny_item
from training.backbones import resolve_backbone
from training.pipeline import train_adapter
from training.trainer import TrainConfig


@pytest.fixture(scope="module")
def two_backbone_adapters(two_backbones: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
                          ) -> tuple[Path, dict[str, Path]]:
    first, second = two_backbones
    adapters = tmp_path_factory.mktemp("later") / "adapters"
    config = TrainConfig(split_layer=1, max_epochs=1, batch_size=8)
    train_adapter(tiny_item("item-a"), adapters, config, str(first))
    train_adapter(tiny_item("item-b"), adapters, config, str(second))
    train_adapter(tiny_item("item-c"), adapters, config, str(second))
    return adapters, {resolve_backbone(str(path)).spec.name: path for path in two_backbones}


def test_first_backbone_first_then_the_rest_without_a_restart(two_backbone_adapters: tuple[Path, dict[str, Path]],
                                                              tmp_path: Path) -> None:
    adapters, folders = two_backbone_adapters
    first_name = resolve_backbone(str(next(iter(folders.values())))).spec.name
    out = tmp_path / "onnx"
    options = {"backbone_folders": folders, "log": lambda _: None, "validate": "golden"}
    manifest = export_all(ExportOptions(adapters, out, backbones=(first_name,), **options))  # type: ignore[arg-type]
    assert set(manifest["items"]) == {"item-a"} and set(manifest["pending"]) == {"item-b", "item-c"}
    entry = manifest["items"]["item-a"]
    assert entry["validation"] == "golden" and entry["validated_on"] == {"golden": 8} and entry["qwk"] == {}
    server = Server({"SCORER_ARTIFACTS": str(out), "SCORER_WATCH_ARTIFACTS_S": "0.3", "SCORER_THREADS": "1"},
                    tmp_path / "server.log")
    try:
        server.wait_ready()
        assert httpx.post(f"{server.url}/score/item-a", json={"answer": "acid rain"}).status_code == 200
        listed = {item["item_id"]: item["status"] for item in httpx.get(f"{server.url}/items").json()}
        assert listed == {"item-a": "ready", "item-b": "preparing", "item-c": "preparing"}
        assert httpx.post(f"{server.url}/score/item-b", json={"answer": "x"}).status_code == 404
        export_all(ExportOptions(adapters, out, **options))  # type: ignore[arg-type]
        deadline, seen = time.time() + 30, []
        while time.time() < deadline:  # every item is listed all along: preparing, then ready
            listed = {item["item_id"]: item["status"] for item in httpx.get(f"{server.url}/items").json()}
            seen.append(listed)
            if set(listed.values()) == {"ready"}:
                break
            time.sleep(0.05)
        assert all(set(listed) == {"item-a", "item-b", "item-c"} for listed in seen), seen
        assert seen[-1] == dict.fromkeys(("item-a", "item-b", "item-c"), "ready"), server.log_path.read_text()[-2000:]
        assert httpx.post(f"{server.url}/score/item-c", json={"answer": "the mass went down"}).status_code == 200
        assert "trunk" in server.log_path.read_text() and "loaded for item-b" in server.log_path.read_text()
    finally:
        server.stop()
    full = export_all(ExportOptions(adapters, out, backbone_folders=folders, log=lambda _: None))
    assert {entry["validation"] for entry in full["items"].values()} == {"full"}
    assert full["pending"] == {} and json.loads((out / "manifest.json").read_text())["pending"] == {}


def test_items_of_one_export_stay_listed_until_each_is_swapped_in(
        two_backbone_adapters: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    """The watcher swaps new items in one by one: the ones not reached yet are still `preparing`."""
    from app.onnx_backend import OnnxBackend
    from app.settings import Settings

    adapters, folders = two_backbone_adapters
    first_name = resolve_backbone(str(next(iter(folders.values())))).spec.name
    out = tmp_path / "onnx"
    options = {"backbone_folders": folders, "log": lambda _: None, "validate": "golden"}
    export_all(ExportOptions(adapters, out, backbones=(first_name,), **options))  # type: ignore[arg-type]
    backend = OnnxBackend(Settings(artifacts=out, threads=1, device="cpu"))
    backend.warm_up()
    assert set(backend.pending()) == {"item-b", "item-c"}
    export_all(ExportOptions(adapters, out, **options))  # type: ignore[arg-type]
    backend.reload("item-b")  # loads the second backbone's trunk on the way
    assert set(backend.items()) == {"item-a", "item-b"} and set(backend.pending()) == {"item-c"}
    backend.reload("item-c")
    assert backend.pending() == {} and len(backend.trunks) == 2
