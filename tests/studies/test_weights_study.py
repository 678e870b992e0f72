"""The combination-rule study reads what the ensemble build keeps and compares rules fairly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studies import weights_study
from tests.training.test_ensemble_choice import TRUTH, candidate
from training.ensemble_build import save_probabilities
from training.ensemble_members import Candidate


def test_saved_probabilities_load_back_by_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = [candidate("a@v1", "minilm", TRUTH, 0.3, 1), candidate("lexical", "", TRUTH, 0.3, 21)]
    members[0].tag = "r2"
    save_probabilities(tmp_path / "x.npz", members, TRUTH)
    monkeypatch.setattr(weights_study, "PROBABILITIES", tmp_path)
    labels, arrays, truth = weights_study.load("x")
    assert labels == ["minilm/r2", "lexical"]
    assert np.array_equal(arrays["test"][1], members[1].probabilities["test"])
    assert list(truth["validation"]) == TRUTH["validation"]


def test_fitted_weights_drop_a_useless_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = candidate("a@v1", "minilm", TRUTH, 0.2, 1)
    rng = np.random.default_rng(5)
    noise = Candidate("lexical", "lexical", "", {split: rng.dirichlet(np.ones(3) * 0.3, len(labels))
                                                   for split, labels in TRUTH.items()})
    save_probabilities(tmp_path / "x.npz", [good, noise], TRUTH)
    monkeypatch.setattr(weights_study, "PROBABILITIES", tmp_path)
    results = weights_study.study_item("x")
    assert list(results) == ["minilm+lexical"]  # kinds of two members or more, own adapter first
    rules = results["minilm+lexical"]
    assert set(rules) == {"equal", "weights", "stacker"}
    # noise drags the equal mean down; the fitted weights learn on four folds to lean on the good member
    assert rules["weights"]["crossfit_validation_qwk"] > rules["equal"]["crossfit_validation_qwk"]
    assert all(-1 <= rule["test_qwk"] <= 1 for rule in rules.values())


def test_lever_study_compares_every_way_with_the_own_adapter(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from studies import lever_study

    members = [candidate("a@v1", "minilm-en", TRUTH, 0.35, 1), candidate("b@v1", "e5", TRUTH, 0.35, 11),
               candidate("c@v1", "minilm-en", TRUTH, 0.35, 31), candidate("lexical", "", TRUTH, 0.35, 21)]
    members[2].tag = "r2"
    for item_id in ("x", "y"):
        save_probabilities(tmp_path / f"{item_id}.npz", members, TRUTH)
    monkeypatch.setattr(weights_study, "PROBABILITIES", tmp_path)
    summary = lever_study.summarise({item_id: lever_study.score_item(item_id) for item_id in ("x", "y")})
    assert {"minilm-en", "e5", "minilm-en/r2"} <= set(summary)  # each adapter alone
    both = summary["minilm-en+minilm-en/r2"]
    assert (both["trunk_runs"], both["member_runs"]) == (1, 2)  # one trunk serves both heads
    assert summary["minilm-en+e5+minilm-en/r2+lexical"]["trunk_runs"] == 2
    everything = summary["minilm-en+e5+minilm-en/r2+lexical"]["test_vs_own_adapter"]
    assert everything["low"] <= everything["difference"] <= everything["high"]
    assert everything["difference"] > 0  # four independent errors voted down beat one member
    assert "test_vs_own_adapter" not in summary["minilm-en"]
