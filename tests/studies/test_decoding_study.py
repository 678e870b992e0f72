"""The decoding comparison on synthetic probabilities whose best cut points are known."""

from __future__ import annotations

import numpy as np

from studies.decoding_study import bagged_thresholds, compare_decoders, cross_validated_qwk


def _shifted_item(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes; the model's expected score runs 0.6 too low, so argmax-like cuts under-score."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, rows)
    expected = np.clip(truth - 0.6 + rng.normal(0, 0.25, rows), 0, 2)
    probs = np.stack([np.clip(1 - np.abs(expected - k), 0, None) for k in range(3)], axis=1)
    return probs / probs.sum(axis=1, keepdims=True), truth


def test_bagged_thresholds_are_ordered_and_move_towards_the_shift() -> None:
    probs, truth = _shifted_item(300, 0)
    cuts = bagged_thresholds(probs, truth, np.random.default_rng(0), resamples=10)
    assert cuts == sorted(cuts) and len(cuts) == 2
    assert cuts[0] < 0.5 and cuts[1] < 1.5  # the fixed k + 0.5 cuts would be too high for this model


def test_cross_validation_prefers_tuned_cuts_over_argmax_on_a_shifted_model() -> None:
    probs, truth = _shifted_item(300, 1)
    cv = cross_validated_qwk(probs, truth, np.random.default_rng(0), resamples=5)
    assert set(cv) == {"argmax", "tuned", "bagged"}
    assert cv["tuned"] > cv["argmax"] + 0.05


def test_compare_decoders_reports_every_rule_and_the_pick() -> None:
    val, test = _shifted_item(240, 2), _shifted_item(240, 3)
    result = compare_decoders(val, test, tuned=[0.5, 1.5])
    scores = result["test_qwk"]
    assert isinstance(scores, dict)
    assert set(scores) == {"tuned", "argmax", "fixed", "bagged", "cv-pick"}
    assert result["cv_pick"] in ("argmax", "tuned", "bagged")
    assert scores["cv-pick"] == scores[result["cv_pick"]]
    assert scores["bagged"] > scores["fixed"]  # learned cuts undo the shift, fixed ones cannot
