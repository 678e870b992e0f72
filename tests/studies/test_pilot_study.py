"""Pilot adapters are paired with their source item's committed adapter, by what validation chose."""

from __future__ import annotations

from pathlib import Path

from studies.pilot_study import best_validation_qwk, mean_change, pilot_rows
from tests.conftest import tiny_item
from training.artifacts import current_record
from training.pipeline import train_adapter
from training.trainer import TrainConfig


def test_pilot_rows_pair_each_pilot_adapter_with_the_committed_one(tiny_backbone: Path, tmp_path: Path) -> None:
    config = TrainConfig(split_layer=1, max_epochs=3, patience=3, batch_size=8)
    committed, pilot = tmp_path / "adapters", tmp_path / "pilot"
    train_adapter(tiny_item(), committed, config, str(tiny_backbone))
    train_adapter(tiny_item(), pilot, TrainConfig(split_layer=1, max_epochs=2, batch_size=8, rank=16, alpha=32),
                  str(tiny_backbone), member_tag="r16")
    train_adapter(tiny_item("no-committed-twin"), pilot, config, str(tiny_backbone), member_tag="r16")
    rows = pilot_rows(pilot, committed)
    assert [(row["item"], row["adapter"], row["tag"]) for row in rows] == [("tiny-item", "tiny-item-r16", "r16")]
    own, other = current_record(committed, "tiny-item"), current_record(pilot, "tiny-item-r16")
    assert own is not None and other is not None
    assert rows[0]["validation_plain"] == best_validation_qwk(own.metrics)
    assert rows[0]["validation_adapted"] == best_validation_qwk(other.metrics)
    assert rows[0]["test_adapted"] == other.metrics["test"]["qwk"]
    expected = rows[0]["validation_adapted"] - rows[0]["validation_plain"]
    assert mean_change(rows, "validation") == expected


def test_best_validation_qwk_reads_the_best_epoch_not_the_last() -> None:
    metrics = {"best_epoch": 2, "curve": [{"epoch": 1, "val_qwk": 0.5}, {"epoch": 2, "val_qwk": 0.7},
                                          {"epoch": 3, "val_qwk": 0.6}]}
    assert best_validation_qwk(metrics) == 0.7


def test_shape_choice_needs_a_strictly_better_validation_qwk() -> None:
    from studies.shape_study import OWN, choose_shape

    assert choose_shape({OWN: 0.80, "r16 S3": 0.80, "r8 S2": 0.79}) == OWN
    assert choose_shape({OWN: 0.80, "r16 S3": 0.81, "r8 S2": 0.79}) == "r16 S3"
