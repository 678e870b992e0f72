"""Agreement metrics: QWK over an item's full score range, accuracy, macro-F1, confusion matrix, means."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Labels = Sequence[int] | NDArray[Any]


def confusion_matrix(truth: Labels, predicted: Labels, labels: Sequence[int]) -> NDArray[np.int64]:
    index = {label: position for position, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for true_label, predicted_label in zip(truth, predicted, strict=True):
        matrix[index[true_label], index[predicted_label]] += 1
    return matrix


def quadratic_weighted_kappa(truth: Labels, predicted: Labels, labels: Sequence[int]) -> float:
    """Kaggle's definition: weights (i-j)^2/(N-1)^2 over the full range, E from the marginals."""
    observed = confusion_matrix(truth, predicted, labels).astype(np.float64)
    n = len(labels)
    grid = np.arange(n)
    weights = (grid[:, None] - grid[None, :]) ** 2 / (n - 1) ** 2
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / max(observed.sum(), 1.0)
    denominator = float((weights * expected).sum())
    if denominator == 0.0:
        return 1.0 if float((weights * observed).sum()) == 0.0 else 0.0
    return 1.0 - float((weights * observed).sum()) / denominator


def accuracy(truth: Labels, predicted: Labels) -> float:
    return float(np.mean(np.asarray(truth) == np.asarray(predicted))) if truth else 0.0


def macro_f1(truth: Labels, predicted: Labels, labels: Sequence[int]) -> float:
    """Mean F1 over the labels that occur in truth or predictions (as scikit-learn does)."""
    matrix = confusion_matrix(truth, predicted, labels)
    scores = []
    for position in range(len(labels)):
        true_positive = matrix[position, position]
        support, predicted_count = matrix[position].sum(), matrix[:, position].sum()
        if support == 0 and predicted_count == 0:
            continue
        scores.append(2 * true_positive / (support + predicted_count))
    return float(np.mean(scores)) if scores else 0.0


def evaluate(truth: Labels, predicted: Labels, labels: Sequence[int]) -> dict[str, object]:
    return {
        "qwk": quadratic_weighted_kappa(truth, predicted, labels),
        "accuracy": accuracy(truth, predicted),
        "macro_f1": macro_f1(truth, predicted, labels),
        "confusion": confusion_matrix(truth, predicted, labels).tolist(),
        "n": len(truth),
    }


def fisher_z_mean(kappas: Sequence[float]) -> float:
    """Kaggle's ASAP averaging: mean of atanh(kappa) (clipped), mapped back with tanh."""
    clipped = [min(max(kappa, -0.999), 0.999) for kappa in kappas]
    return math.tanh(float(np.mean([math.atanh(kappa) for kappa in clipped])))
