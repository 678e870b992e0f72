"""add-item's defects found on unseen small items (#29), each reproduced: steps, decoding, the floor, the
commands it prints, isolation between items and backbones, and what it checks again."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli.add_item import add_item, cmd_add_item
from export.pipeline import ExportOptions, export_all
from tests.conftest import tiny_item
from tests.export.test_add_item import FAST, write_item_file
from training.cli import main as training_main
from training.data import ScoreRange
from training.ensemble import Candidate, evaluate_subset, folds_of
from training.pipeline import QualityRefused, train_adapter
from training.trainer import TrainConfig


def test_min_steps_are_trained_and_kept(tiny_backbone: Path, tmp_path: Path) -> None:
    """Early stopping (patience 1, a learning rate that makes validation loss climb) stopped after a few steps
    and kept an early epoch; a minimum number of steps means that many, for training and for the kept model."""
    config = TrainConfig(split_layer=1, max_epochs=1, batch_size=8, learning_rate=5e-2, patience=1, min_steps=40)
    train_adapter(tiny_item("steps", copies=4), tmp_path, config, str(tiny_backbone))
    steps = json.loads((tmp_path / "steps" / "v1" / "metrics.json").read_text())["steps"]
    assert steps["minimum"] == 40 and steps["trained"] >= 40 and steps["kept"] >= 40, steps
    card = (tmp_path / "steps" / "v1" / "MODEL_CARD.md").read_text()
    assert f"{steps['trained']} optimiser steps (minimum 40) of 8 answers in fp32" in card  # every setting shown


def test_small_validation_sets_use_fixed_cuts() -> None:
    """Thresholds tuned on a few dozen validation answers overfit them: fixed cuts on the expected score.
    Argmax, suggested instead, lost in the small-item check (reports/small_data_check.md)."""
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), size=60)
    truth = {"validation": list(probabilities[:30].argmax(axis=1)), "test": list(probabilities[30:].argmax(axis=1))}
    member = Candidate("m", "minilm-en", "adapter", {"validation": probabilities[:30], "test": probabilities[30:]})
    choice = evaluate_subset((member,), truth, folds_of(truth["validation"]))
    assert choice.thresholds == [0.5, 1.5, 2.5]


def test_a_refusal_prints_a_command_that_serves_the_candidate(tiny_backbone: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = write_item_file(tmp_path / "new.csv", rows=60)
    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    with pytest.raises(QualityRefused) as refused:
        add_item("weak-item", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=1.01,
                 backbone=str(tiny_backbone), recipe="standard")
    command = str(refused.value).splitlines()[-1].strip()
    assert command.startswith("scorer add-item") and f"--backbone {tiny_backbone}" in command
    argv = shlex.split(command)[1:]  # after `scorer`
    assert training_main([*argv, "--max-epochs", "1"], add_item=cmd_add_item) == 0
    printed = capsys.readouterr().out
    assert "admin/items/weak-item/reload" in printed
    entry = json.loads((out / "manifest.json").read_text())["items"]["weak-item"]
    assert entry.get("fast", entry)["version"] == "v1"  # the kept candidate serves, as the refusal chose it


def test_accept_without_a_backbone_finds_the_one_that_has_the_version(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    listing = {"items": {"quiz-e5": {"versions": ["v1"], "current": None},
                         "quiz": {"versions": ["v1", "v2"], "current": "v1"}}, "format": 1}
    (adapters / "manifest.json").write_text(json.dumps(listing))
    data = write_item_file(tmp_path / "d.csv", rows=30)
    code = training_main(["add-item", "--item", "quiz", "--data", str(data), "--accept", "v1", "--adapters",
                          str(adapters), "--out", str(tmp_path / "o")], add_item=cmd_add_item)
    assert code == 2 and "say which with --backbone" in capsys.readouterr().err  # both have v1: never a guess


def test_add_item_checks_only_what_it_builds(tiny_backbone: Path, tiny_adapters: Path, tmp_path: Path) -> None:
    """After `make serve` (golden-answer export) the first add-item re-checked every shipped head in full."""
    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    shutil.copytree(tiny_adapters, adapters)
    export_all(ExportOptions(adapters, out, backbone=str(tiny_backbone), validate="golden", log=lambda _: None))
    before = json.loads((out / "manifest.json").read_text())["items"]
    summary = add_item("new-one", write_item_file(tmp_path / "new.csv"), ScoreRange(0, 3), adapters, out, FAST,
                       min_test_qwk=-1.0, backbone=str(tiny_backbone), recipe="standard")
    after = json.loads((out / "manifest.json").read_text())["items"]
    for item_id in before:
        assert after[item_id] == before[item_id], item_id  # not re-checked: the same entry, golden as before
    assert after[str(summary["item_id"])]["validation"] == "full"


def test_the_served_configuration_is_chosen_on_validation(tiny_backbone: Path, tmp_path: Path) -> None:
    """The lexical member was always served; now validation chooses (ties: fewer members)."""
    summary = add_item("chosen", write_item_file(tmp_path / "new.csv"), ScoreRange(0, 3), tmp_path / "a",
                       tmp_path / "o", FAST, min_test_qwk=-1.0, backbone=str(tiny_backbone), recipe="standard")
    choice = summary["choice"]
    assert isinstance(choice, dict)
    candidates = choice["candidates"]
    best = max(candidates.values(), key=lambda c: c["validation_qwk"])["validation_qwk"]
    assert candidates[choice["served"]]["validation_qwk"] == best
    assert ("lexical" in str(summary["members"])) == ("lexical" in choice["served"])


@pytest.mark.slow
def test_one_source_on_both_backbones_changes_nothing_else(tmp_path: Path) -> None:
    """The same --item on the second backbone overwrote the first backbone's ensemble (its lexical member
    vanished); each backbone's item is its own id now, and adding one leaves the other as it was."""
    from app.backend import AnswerRow, score_now
    from app.onnx_backend import OnnxBackend
    from app.settings import Settings

    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    data = write_item_file(tmp_path / "new.csv", rows=150)
    quick = TrainConfig(max_epochs=1, batch_size=32)
    english = add_item("twice", data, ScoreRange(0, 3), adapters, out, quick, min_test_qwk=-1.0,
                       backbone="minilm-en", recipe="standard")
    answers = [AnswerRow("twice", text) for text in ("acid rain dissolves marble", "vinegar amount", "idk")]
    scored_before = score_now(OnnxBackend(Settings(artifacts=out, threads=1)), answers)
    entry_before = json.loads((out / "manifest.json").read_text())["items"]["twice"]
    multilingual = add_item("twice", data, ScoreRange(0, 3), adapters, out, quick, min_test_qwk=-1.0,
                            backbone="e5-multilingual", recipe="standard")
    manifest = json.loads((out / "manifest.json").read_text())["items"]
    assert english["item_id"] == "twice" and multilingual["item_id"] == "twice-e5"
    assert manifest["twice"] == entry_before  # untouched
    assert str(multilingual["members"][0]).startswith("twice-e5@")  # type: ignore[index]
    assert (adapters / "ensembles" / "twice" / "ensemble.json").is_file()
    assert (adapters / "ensembles" / "twice-e5" / "ensemble.json").is_file()
    scored_after = score_now(OnnxBackend(Settings(artifacts=out, threads=1)), answers)
    assert scored_after == scored_before
