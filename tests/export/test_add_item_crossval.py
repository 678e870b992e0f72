"""add-item --select cv: chosen on every answer out of fold, judged on that estimate, trained on every answer,
exported with exactly the chosen members and decoding; a refused run is accepted as it was kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.add_item import add_item
from tests.export.test_add_item import FAST, write_item_file
from training.artifacts import current_record
from training.data import DataError, ScoreRange
from training.pipeline import QualityRefused


def test_cross_validated_item_is_trained_on_every_answer_and_served_as_chosen(tiny_backbone: Path,
                                                                              tmp_path: Path) -> None:
    data = write_item_file(tmp_path / "new.csv", rows=100)
    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    summary = add_item("cv-item", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=-1.0,
                       backbone=str(tiny_backbone), recipe="standard", select="cv")
    crossval = summary["crossval"]
    assert isinstance(crossval, dict) and crossval["folds"] == 5 and crossval["answers"] == 100
    assert summary["test_qwk"] is None  # nothing was held out from the served model
    assert len(crossval["configurations"]) == 6 and crossval["qwk"] == max(crossval["configurations"].values())
    record = current_record(adapters, "cv-item")
    assert record is not None and record.metrics["sizes"]["train"] == 100
    assert record.metrics["steps"]["trained"] >= crossval["refit_steps"]
    assert "Cross-validated QWK" in (record.folder / "MODEL_CARD.md").read_text()
    ensemble = json.loads((adapters / "ensembles" / "cv-item" / "ensemble.json").read_text())
    assert ensemble["selection"] == "cross-validated"
    assert ("lexical" in ensemble["chosen"]["signature"]) == crossval["chosen"].startswith("adapter + lexical")
    chosen_decoding = crossval["chosen"].rsplit(", ", 1)[1]
    thresholds = ensemble["decoding"]["thresholds"]
    assert (thresholds is None) == (chosen_decoding == "argmax")
    if chosen_decoding == "cuts":
        assert thresholds == [0.5, 1.5, 2.5]
    assert record.config["decoding"]["thresholds"] == thresholds  # the single head decodes as chosen too
    entry = json.loads((out / "manifest.json").read_text())["items"]["cv-item"]
    assert entry["version"] == summary["version"] and entry["evidence"]["answers"] == 100  # each answer once


def test_cross_validated_refusal_is_accepted_as_kept(tiny_backbone: Path, tmp_path: Path) -> None:
    data = write_item_file(tmp_path / "new.csv", rows=60)
    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    with pytest.raises(QualityRefused, match=r"cross-validated QWK .* over 60 answers") as refused:
        add_item("weak-cv", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=1.01,
                 backbone=str(tiny_backbone), recipe="standard", select="cv")
    assert "--accept v1" in str(refused.value) and current_record(adapters, "weak-cv") is None
    summary = add_item("weak-cv", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=1.01,
                       backbone=str(tiny_backbone), accept="v1")
    assert summary["adapter_version"] == "v1" and isinstance(summary["crossval"], dict)
    with pytest.raises(DataError, match="--select cv"):
        add_item("other", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=-1.0,
                 backbone=str(tiny_backbone), select="cv", accurate=True)
