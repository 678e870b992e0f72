"""A new item from a scored file: add-item trains, evaluates, exports; a running service then scores it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pytest

from cli.add_item import add_item
from tests.conftest import Server
from training.artifacts import current_record
from training.asap import load_asap_item, second_scores
from training.data import DataError, ScoreRange
from training.pipeline import QualityRefused
from training.trainer import TrainConfig

FAST = TrainConfig(split_layer=1, max_epochs=2, batch_size=16, learning_rate=5e-3)


def write_item_file(path: Path, rows: int = 150) -> Path:
    """Real ASAP answers of item 1, relabelled as a new item (no split column: add-item splits)."""
    answers = load_asap_item("asap-01").train[::7][:rows]  # every score, not only the first rows' 0s
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["answer", "score"])
        writer.writerows(answers)
    return path


def test_add_item_then_served(tiny_backbone: Path, tmp_path: Path) -> None:
    data = write_item_file(tmp_path / "new.csv")
    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    summary = add_item("acid-rain-2", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=-1.0,
                       backbone=str(tiny_backbone), recipe="standard")
    assert summary["adapter_version"] == "v1" and summary["score_range"] == "0-3"
    assert sum(summary["sizes"].values()) == 150  # type: ignore[union-attr]
    assert float(summary["max_abs_logit_diff"]) <= 1e-4  # type: ignore[arg-type]
    # Validation chose between the adapter alone and the adapter with the item's lexical member.
    choice = summary["choice"]
    assert isinstance(choice, dict) and len(choice["candidates"]) == 2
    with_lexical = ["acid-rain-2@v1", f"lexical@{summary['version']}"]
    assert summary["members"] == (with_lexical if "lexical" in str(choice["served"]) else ["acid-rain-2@v1"])
    record = current_record(adapters, "acid-rain-2")
    assert record is not None and "test" in record.metrics and "confusion" in record.metrics["test"]
    # Its lexical member was refitted on training + validation answers: the export reproduced test only.
    ensemble = json.loads((adapters / "ensembles" / "acid-rain-2" / "ensemble.json").read_text())
    assert ensemble["lexical_fitted_on"] == "train+validation"
    entry = json.loads((out / "manifest.json").read_text())["items"]["acid-rain-2"]
    assert entry["validation"] == "full" and "test" in entry["qwk"]
    server = Server({"SCORER_ARTIFACTS": str(out)}, tmp_path / "server.log")
    try:
        server.wait_ready()
        scored = httpx.post(f"{server.url}/score/acid-rain-2", json={"answer": "acid rain dissolves marble"}).json()
        assert scored["adapter_version"] == summary["version"] and len(scored["probabilities"]) == 4
        assert scored["members"] == summary["members"]
        # Its evidence: the file's training and validation answers, named by their row in the file.
        explained = httpx.post(f"{server.url}/score/acid-rain-2",
                               json={"answer": "acid rain dissolves marble", "explain": True}).json()["evidence"]
        assert all(n["id"].startswith("row ") and int(n["id"][4:]) >= 2 for n in explained["neighbours"])
        assert entry["evidence"]["answers"] == summary["sizes"]["train"] + summary["sizes"]["validation"]  # type: ignore[index]
    finally:
        server.stop()


def test_a_second_rater_column_adds_a_both_raters_member(tiny_backbone: Path, tmp_path: Path) -> None:
    second = second_scores("asap-01")
    answers = load_asap_item("asap-01").train[::7][:120]
    data = tmp_path / "two-raters.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["answer", "score", "score2"])
        writer.writerows([(text, score, second.get(text, "")) for text, score in answers])
    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    summary = add_item("acid-rain-3", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=-1.0,
                       backbone=str(tiny_backbone), recipe="standard", second_score_column="score2")
    # The both-raters adapter was a candidate; validation chose what serves (the own adapter always first).
    assert any("+" in kind for kind in summary["choice"]["candidates"])  # type: ignore[index]
    assert str(summary["members"][0]) == "acid-rain-3@v1"  # type: ignore[index]
    own, both = current_record(adapters, "acid-rain-3"), current_record(adapters, "acid-rain-3-r2")
    assert own is not None and both is not None and both.config["member_tag"] == "r2"
    assert both.metrics["sizes"]["train"] > own.metrics["sizes"]["train"]  # the second rater's rows too
    assert both.metrics["sizes"]["test"] == own.metrics["sizes"]["test"]  # held-out answers: first score only
    served = json.loads((out / "manifest.json").read_text())["items"]["acid-rain-3"]
    assert served["validation"] == "full" and "test" in served["qwk"]
    # Added again without the second rater: the earlier run's both-raters adapter is not a member any more.
    again = add_item("acid-rain-3", write_item_file(tmp_path / "one.csv", rows=120), ScoreRange(0, 3), adapters,
                     out, FAST, min_test_qwk=-1.0, backbone=str(tiny_backbone), recipe="standard")
    assert str(again["members"][0]) == "acid-rain-3@v2"  # type: ignore[index]
    assert not any("-r2" in str(member) for member in again["members"])  # type: ignore[union-attr]
    with pytest.raises(DataError, match="no second scores"):
        add_item("acid-rain-4", write_item_file(tmp_path / "one.csv"), ScoreRange(0, 3), adapters, out, FAST,
                 min_test_qwk=-1.0, backbone=str(tiny_backbone), second_score_column="score2")


def test_quality_floor_refuses_keeps_the_candidate_and_accept_serves_it(tiny_backbone: Path,
                                                                       tmp_path: Path) -> None:
    data = write_item_file(tmp_path / "new.csv", rows=60)
    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    with pytest.raises(QualityRefused, match="below the floor") as refused:
        add_item("weak-item", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=1.01,
                 backbone=str(tiny_backbone), recipe="standard")
    message = str(refused.value)
    assert "--min-qwk" in message and "--accept v1" in message and "nothing is served for this item yet" in message
    # The floor judged what would be served (the per-item choice, lexical member included where chosen).
    candidate = json.loads((adapters / "weak-item" / "v1" / "candidate.json").read_text())
    assert candidate["members"] == {"weak-item": "v1"}
    served = candidate["ensemble"]["chosen"]
    assert f"({' + '.join(m.get('adapter', 'lexical') for m in served['entries'])})" in message
    assert f"test QWK {served['test']['qwk']:.3f}" in message
    assert current_record(adapters, "weak-item") is None  # kept as a candidate, not served
    kept = (adapters / "weak-item" / "v1" / "adapter.safetensors").read_bytes()
    summary = add_item("weak-item", data, ScoreRange(0, 3), adapters, out, FAST, min_test_qwk=1.01,
                       backbone=str(tiny_backbone), accept="v1")
    assert summary["adapter_version"] == "v1" and float(summary["seconds_train"]) < 15  # type: ignore[arg-type]
    record = current_record(adapters, "weak-item")
    assert record is not None and record.version == "v1"
    assert (record.folder / "adapter.safetensors").read_bytes() == kept  # the same weights: not retrained
    assert "weak-item" in json.loads((out / "manifest.json").read_text())["items"]


def test_small_item_recipe() -> None:
    from training.data import ItemData
    from training.recipes import recipe_config
    from training.trainer import native_bf16

    skewed = ItemData("x", ScoreRange(0, 2), train=[("a", 0)] * 80 + [("b", 1)] * 15 + [("c", 2)] * 5,
                      validation=[("a", 0)] * 12, test=[])
    small = recipe_config(skewed, TrainConfig())
    assert small.min_steps == 300 and small.class_weighted and small.decoding == "fixed"
    assert small.batch_size == 16 and small.step_precision == ("bf16" if native_bf16() else "fp32")
    assert small.epochs_for(100) == 43  # 7 steps per epoch: 43 epochs reach 300 steps
    assert recipe_config(skewed, TrainConfig(batch_size=8)).batch_size == 8  # an explicit batch is honoured
    assert recipe_config(skewed, TrainConfig(step_precision="fp32")).step_precision == "fp32"  # and precision
    large = ItemData("y", ScoreRange(0, 2), train=[("a", k % 3) for k in range(1500)], validation=[], test=[])
    assert recipe_config(large, TrainConfig()) == TrainConfig()
    assert TrainConfig().as_dict() == {k: v for k, v in small.as_dict().items()
                                       if k not in ("min_steps", "step_precision")} | {
        "class_weighted": False, "decoding": "auto", "batch_size": 32}  # committed fingerprints are unchanged


def test_bad_item_id_and_bad_file(tiny_backbone: Path, tmp_path: Path) -> None:
    data = write_item_file(tmp_path / "new.csv", rows=30)
    with pytest.raises(DataError, match="slug"):
        add_item("../etc", data, None, tmp_path / "a", tmp_path / "o", FAST, -1.0, backbone=str(tiny_backbone))
    with pytest.raises(DataError, match="reserved"):
        add_item("ensembles", data, None, tmp_path / "a", tmp_path / "o", FAST, -1.0, backbone=str(tiny_backbone))
    with pytest.raises(DataError, match="--accurate pairs"):  # before any training: no partner backbone
        add_item("ok-id", data, None, tmp_path / "a", tmp_path / "o", FAST, -1.0, backbone=str(tiny_backbone),
                 accurate=True)
    bad = tmp_path / "bad.csv"
    bad.write_text("answer,score\nfine,1\nnot fine,9\n")
    with pytest.raises(DataError, match=r"row 3.*outside the declared range"):
        add_item("ok-id", bad, ScoreRange(0, 3), tmp_path / "a", tmp_path / "o", FAST, -1.0,
                 backbone=str(tiny_backbone))
