"""Items of two backbones in one deployment: one trunk each, shared by its items, never mixed up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.backend import AnswerRow, score_now
from app.errors import ItemUnavailable
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from core.manifest import load_artifacts
from core.onnx_runtime import pad
from export.pipeline import ExportOptions, export_all
from export.validate import ValidationError
from tests.conftest import tiny_item
from training.backbones import resolve_backbone
from training.pipeline import train_adapter
from training.trainer import TrainConfig


@pytest.fixture(scope="module")
def mixed_export(two_backbones: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    first, second = two_backbones
    root = tmp_path_factory.mktemp("mixed")
    config = TrainConfig(split_layer=1, max_epochs=1, batch_size=8)
    train_adapter(tiny_item("item-a"), root / "adapters", config, str(first))
    train_adapter(tiny_item("item-b"), root / "adapters", config, str(second))
    train_adapter(tiny_item("item-c"), root / "adapters", config, str(second))
    folders = {resolve_backbone(str(path)).spec.name: path for path in two_backbones}
    export_all(ExportOptions(root / "adapters", root / "onnx", backbone_folders=folders, log=lambda _: None))
    return root / "onnx"


def test_one_trunk_per_backbone_in_the_manifest(mixed_export: Path, two_backbones: tuple[Path, Path]) -> None:
    manifest = json.loads((mixed_export / "manifest.json").read_text())
    names = {resolve_backbone(str(path)).spec.name for path in two_backbones}
    assert set(manifest["backbones"]) == names
    trunks = {entry["trunk"]["file"] for entry in manifest["backbones"].values()}
    assert len(trunks) == 2 and all((mixed_export / file).is_file() for file in trunks)
    assert manifest["items"]["item-b"]["backbone"] == manifest["items"]["item-c"]["backbone"]
    assert manifest["items"]["item-a"]["backbone"] != manifest["items"]["item-b"]["backbone"]
    # the single-backbone view at the top level is the primary backbone's
    assert manifest["trunk"] == manifest["backbones"][manifest["primary_backbone"]]["trunk"]


def test_service_scores_each_item_on_its_own_trunk(mixed_export: Path) -> None:
    backend = OnnxBackend(Settings(artifacts=mixed_export, threads=1, device="cpu"))
    backend.warm_up()
    assert len(backend.trunks) == 2
    rows = [("item-a", "acid rain reacts with limestone"), ("item-b", "the mass went down"),
            ("item-c", "idk"), ("item-b", "vinegar changed the mass of the samples")]
    outcomes = score_now(backend, [AnswerRow(*row) for row in rows])
    assert all(not isinstance(outcome, Exception) for outcome in outcomes), outcomes
    # Heads were checked against the exporter's golden logits on first load: on the wrong trunk they differ.
    for item_id in ("item-a", "item-b", "item-c"):
        spec = backend.items()[item_id]
        trunk = backend.trunks[spec.backbone]
        ids, mask = pad([row for row, _ in trunk.encoder.encode(spec.golden_texts)])
        hidden = trunk.session.run(["hidden_states"], {"input_ids": ids, "attention_mask": mask})[0]
        logits = backend.cache.get(spec).logits(hidden, mask)
        assert np.abs(logits - np.asarray(spec.golden_logits)).max() < 1e-4
        other = next(t for name, t in backend.trunks.items() if name != spec.backbone)
        wrong = other.session.run(["hidden_states"], {"input_ids": ids, "attention_mask": mask})[0]
        assert np.abs(backend.cache.get(spec).logits(wrong, mask) - np.asarray(spec.golden_logits)).max() > 1e-3


def test_item_on_a_trunk_it_was_not_trained_with_is_refused(mixed_export: Path, tmp_path: Path) -> None:
    copy = tmp_path / "onnx"
    shutil.copytree(mixed_export, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["items"]["item-b"]["backbone_sha256"] = "f" * 64  # trained on other weights of that backbone
    manifest["items"]["item-c"]["backbone"] = "e5-multilingual"  # a backbone this deployment lacks
    (copy / "manifest.json").write_text(json.dumps(manifest))
    backend = OnnxBackend(Settings(artifacts=copy, threads=1, device="cpu"), load_artifacts(copy))
    backend.warm_up()
    scored, wrong_hash, no_trunk = score_now(backend, [AnswerRow("item-a", "acid rain"),
                                                    AnswerRow("item-b", "acid"), AnswerRow("item-c", "x")])
    assert not isinstance(scored, Exception)
    assert isinstance(wrong_hash, ItemUnavailable) and "re-export" in wrong_hash.message
    assert "ffffffffffff" in wrong_hash.message
    assert isinstance(no_trunk, ItemUnavailable) and "does not serve" in no_trunk.message


def test_exporting_one_backbone_keeps_the_others(mixed_export: Path, two_backbones: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    """What add-item does: only the new item's backbone is re-exported; the other keeps its files and items."""
    root = mixed_export.parent
    copy = tmp_path / "onnx"
    shutil.copytree(mixed_export, copy)
    before = json.loads((copy / "manifest.json").read_text())
    first, second = (resolve_backbone(str(path)).spec.name for path in two_backbones)
    folders = {first: two_backbones[0], second: two_backbones[1]}
    logs: list[str] = []
    after = export_all(ExportOptions(root / "adapters", copy, backbone_folders=folders, backbones=(first,),
                                     log=logs.append))
    assert set(after["items"]) == {"item-a", "item-b", "item-c"}
    assert after["backbones"][second] == before["backbones"][second]
    assert after["items"]["item-b"] == before["items"]["item-b"]
    assert any(line.startswith(f"{second}: kept") for line in logs)
    with pytest.raises(ValidationError, match="no adapters of backbone"):
        export_all(ExportOptions(root / "adapters", copy, backbone_folders=folders, backbones=("nope",),
                                 log=lambda _: None))
    backend = OnnxBackend(Settings(artifacts=copy, threads=1, device="cpu"))
    backend.warm_up()
    assert not any(isinstance(o, Exception) for o in score_now(backend, [AnswerRow("item-a", "acid"),
                                                                            AnswerRow("item-c", "idk")]))
