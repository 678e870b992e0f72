"""A new item from a scored file: add-item trains, evaluates, exports; a running service then scores it."""

from __future__ import annotations

import csv
from pathlib import Path

import httpx
import pytest

from export.add_item import add_item
from tests.conftest import Server
from training.artifacts import current_record
from training.asap import load_asap_item
from training.data import DataError, ScoreRange
from training.pipeline import QualityRefused
from training.trainer import TrainConfig

FAST = TrainConfig(split_layer=1, max_epochs=2, batch_size=16, learning_rate=5e-3)


def write_item_file(path: Path, rows: int = 150) -> Path:
    """Real ASAP answers of item 1, relabelled as a new item (no split column: add-item splits)."""
    answers = load_asap_item("asap-01").train[:rows]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["answer", "score"])
        writer.writerows(answers)
    return path


def test_add_item_then_served(tiny_backbone: Path, tmp_path: Path) -> None:
    data = write_item_file(tmp_path / "new.csv")
    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    summary = add_item("acid-rain-2", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=-1.0,
                       backbone=str(tiny_backbone))
    assert summary["version"] == "v1" and summary["score_range"] == "0-3"
    assert sum(summary["sizes"].values()) == 150  # type: ignore[union-attr]
    assert float(summary["max_abs_logit_diff"]) <= 1e-4  # type: ignore[arg-type]
    record = current_record(adapters, "acid-rain-2")
    assert record is not None and "test" in record.metrics and "confusion" in record.metrics["test"]
    server = Server({"SCORER_ARTIFACTS": str(out)}, tmp_path / "server.log")
    try:
        server.wait_ready()
        scored = httpx.post(f"{server.url}/score/acid-rain-2", json={"answer": "acid rain dissolves marble"}).json()
        assert scored["adapter_version"] == "v1" and len(scored["probabilities"]) == 4
    finally:
        server.stop()


def test_quality_floor_refuses_and_writes_nothing(tiny_backbone: Path, tmp_path: Path) -> None:
    data = write_item_file(tmp_path / "new.csv", rows=60)
    adapters = tmp_path / "adapters"
    with pytest.raises(QualityRefused, match="below the floor"):
        add_item("weak-item", data, ScoreRange(0, 3), adapters, tmp_path / "onnx", FAST, min_test_qwk=1.01,
                 backbone=str(tiny_backbone))
    assert current_record(adapters, "weak-item") is None


def test_bad_item_id_and_bad_file(tiny_backbone: Path, tmp_path: Path) -> None:
    data = write_item_file(tmp_path / "new.csv", rows=30)
    with pytest.raises(DataError, match="slug"):
        add_item("../etc", data, None, tmp_path / "a", tmp_path / "o", FAST, -1.0, backbone=str(tiny_backbone))
    bad = tmp_path / "bad.csv"
    bad.write_text("answer,score\nfine,1\nnot fine,9\n")
    with pytest.raises(DataError, match=r"row 3.*outside the declared range"):
        add_item("ok-id", bad, ScoreRange(0, 3), tmp_path / "a", tmp_path / "o", FAST, -1.0,
                 backbone=str(tiny_backbone))
