from __future__ import annotations

import numpy as np
import pytest

from core.decoding import decode
from training.decoding import tune_thresholds
from training.metrics import accuracy, fisher_z_mean, macro_f1, quadratic_weighted_kappa


def test_qwk_hand_computed() -> None:
    # O = [[1,0,0],[0,0,1],[0,0,1]], sum wO = 0.25, sum wE = 1.25 -> 0.8 (worked by hand)
    assert quadratic_weighted_kappa([0, 1, 2], [0, 2, 2], [0, 1, 2]) == pytest.approx(0.8)
    assert quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx(1.0)
    # complete reversal over the full range is worse than chance
    assert quadratic_weighted_kappa([0, 0, 2, 2], [2, 2, 0, 0], [0, 1, 2]) == pytest.approx(-1.0)


def test_qwk_uses_full_score_range() -> None:
    # Scores 0, 1 and 3 only: the distance 1->3 counts as 2 on the 0-3 rubric, not as one step.
    truth, predicted = [0, 1, 3, 3, 1], [0, 3, 3, 1, 1]
    full = quadratic_weighted_kappa(truth, predicted, [0, 1, 2, 3])
    observed_only = quadratic_weighted_kappa([{0: 0, 1: 1, 3: 2}[s] for s in truth],
                                             [{0: 0, 1: 1, 3: 2}[s] for s in predicted], [0, 1, 2])
    assert full != pytest.approx(observed_only)


def test_accuracy_f1_fisher() -> None:
    assert accuracy([0, 1, 1, 2], [0, 1, 2, 2]) == 0.75
    # F1 per class: 1.0, 2/3, 2/3 -> mean 7/9
    assert macro_f1([0, 1, 1, 2], [0, 1, 2, 2], [0, 1, 2]) == pytest.approx(7 / 9)
    assert fisher_z_mean([0.5, 0.5]) == pytest.approx(0.5)
    assert fisher_z_mean([0.9, 0.5]) > np.mean([0.9, 0.5])


def test_tuned_thresholds_never_worse_than_default() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + np.eye(4)[truth] * 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    thresholds, best = tune_thresholds(probabilities, list(truth))
    default = quadratic_weighted_kappa(list(truth), list(decode(probabilities, [0.5, 1.5, 2.5])), [0, 1, 2, 3])
    assert best >= default
    assert thresholds == sorted(thresholds)
