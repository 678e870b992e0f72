"""Tuning the decoding thresholds on validation (the rule itself, shared with serving, is core.decoding).

QWK punishes distant errors quadratically, so the expected score sum_k p_k * k cut at tuned thresholds
usually beats argmax. Thresholds are tuned on validation only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from core.decoding import expected_score
from training.metrics import quadratic_weighted_kappa


def tune_thresholds(
    probabilities: NDArray[np.float64], truth_index: Sequence[int], rounds: int = 3
) -> tuple[list[float], float]:
    """Coordinate search of the K-1 cut points on the expected score; returns (thresholds, QWK)."""
    classes = probabilities.shape[1]
    labels = list(range(classes))
    scores = expected_score(probabilities)
    thresholds = [k + 0.5 for k in range(classes - 1)]

    def qwk(cuts: list[float]) -> float:
        return quadratic_weighted_kappa(truth_index, list(np.searchsorted(cuts, scores)), labels)

    best = qwk(thresholds)
    for _ in range(rounds):
        for position in range(classes - 1):
            low = thresholds[position - 1] if position else 0.0
            high = thresholds[position + 1] if position + 1 < classes - 1 else classes - 1.0
            for candidate in np.linspace(low, high, 41)[1:-1]:
                trial = [*thresholds[:position], float(candidate), *thresholds[position + 1 :]]
                value = qwk(trial)
                if value > best + 1e-9:
                    best, thresholds = value, trial
    return thresholds, best
