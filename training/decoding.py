"""Turning class probabilities into scores: argmax, or QWK-aware thresholds on the expected score.

QWK punishes distant errors quadratically, so the expected score sum_k p_k * k cut at tuned thresholds
usually beats argmax. Thresholds are tuned on validation only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from training.metrics import quadratic_weighted_kappa


def expected_score(probabilities: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(probabilities @ np.arange(probabilities.shape[1], dtype=np.float64))


def decode(probabilities: NDArray[np.float64], thresholds: Sequence[float] | None) -> NDArray[np.int64]:
    """Class index per row (0-based); thresholds=None means argmax."""
    if thresholds is None:
        return np.asarray(probabilities.argmax(axis=1), dtype=np.int64)
    return np.asarray(np.searchsorted(np.asarray(thresholds), expected_score(probabilities)), dtype=np.int64)


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
