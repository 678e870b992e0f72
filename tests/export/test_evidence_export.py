"""The evidence index as the exporter writes it: texts only on request, one file per item version, kept for
rollback with the version it belongs to, and a changed index file refused by its hash."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.evidence import EvidenceIndex
from core.manifest import item_spec, load_artifacts
from export.pipeline import ExportOptions, export_all
from tests.conftest import tiny_evidence_rows, tiny_item
from training.pipeline import train_adapter
from training.trainer import TrainConfig


def test_texts_versions_and_rollback(tiny_backbone: Path, tmp_path: Path) -> None:
    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    config = TrainConfig(split_layer=1, max_epochs=2, batch_size=8, seed=1, learning_rate=5e-3)
    train_adapter(tiny_item("item-a"), adapters, config, str(tiny_backbone))  # type: ignore[arg-type]
    rows = {"item-a": tiny_evidence_rows("item-a")}
    export_all(ExportOptions(adapters, out, backbone=str(tiny_backbone), log=lambda _: None, evidence_rows=rows,
                             evidence_texts=True, validate="golden"))
    first = load_artifacts(out).items["item-a"]
    for again in ({"evidence": False}, {}):  # --no-evidence, or an export without the item's data: kept, not rebuilt
        export_all(ExportOptions(adapters, out, backbone=str(tiny_backbone), log=lambda _: None, validate="golden",
                                 evidence_texts=True, **again))  # type: ignore[arg-type]
        assert load_artifacts(out).items["item-a"].evidence == first.evidence
    assert first.evidence is not None and first.evidence.texts and first.evidence.path.name == "v1.evidence.npz"
    index = EvidenceIndex(first.evidence)
    texts = {row_id: text for row_id, text, _ in rows["item-a"]}
    found = index.explain(index.unit[:2] * 3.0, [0, 0], first.labels)  # stored answers find themselves
    assert found[0].body["neighbours"][0]["text"] == texts[found[0].body["neighbours"][0]["id"]]
    assert found[0].body["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)

    train_adapter(tiny_item("item-a"), adapters, replace(config, seed=2), str(tiny_backbone))  # type: ignore[arg-type]
    export_all(ExportOptions(adapters, out, backbone=str(tiny_backbone), log=lambda _: None, evidence_rows=rows,
                             validate="golden"))  # v2 without texts
    manifest = json.loads((out / "manifest.json").read_text())
    current = load_artifacts(out).items["item-a"]
    assert current.version == "v2" and current.evidence is not None and not current.evidence.texts
    earlier = item_spec(out, "item-a", manifest["history"]["item-a"][0], manifest)
    assert earlier.version == "v1" and earlier.evidence is not None and earlier.evidence.path.is_file()
    assert earlier.evidence.sha256 == first.evidence.sha256  # rollback serves v1 with v1's own index
    assert "text" not in EvidenceIndex(current.evidence).explain(np.ones((1, index.dim), np.float32), [0],
                                                                  current.labels)[0].body["neighbours"][0]
    current.evidence.path.write_bytes(first.evidence.path.read_bytes())  # another index under v2's hash
    with pytest.raises(ValueError, match="hash"):
        EvidenceIndex(current.evidence)
