"""Choosing an item's ensemble on validation: which members, combined by the equal-weight mean of their
probabilities, then the item's thresholds tuned on the combination.

Validation is used twice (thresholds, and which subset wins), so subsets are compared by *cross-fitted*
validation QWK: for each of five folds the thresholds are tuned on the other four and applied to it, and the
pooled predictions are scored. Equal weights are fitted to nothing, so they cannot overfit the ~170-400
validation answers of an ASAP item; fitted weights or a stacker would need cross-fitting of their own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numpy.typing import NDArray

from core.decoding import decode
from core.ensemble import combine
from training.decoding import tune_thresholds
from training.ensemble_members import Candidate
from training.metrics import evaluate, quadratic_weighted_kappa
from training.recipes import TUNE_MIN_VALIDATION

FOLDS = 5
# The default CPU budget: trunk runs per answer (each backbone's trunk is one run whatever the heads on it).
DEFAULT_MAX_TRUNKS = 2


@dataclass
class Choice:
    members: tuple[Candidate, ...]
    crossfit_qwk: float  # what chose it
    thresholds: list[float] | None  # tuned on the whole validation set, as served; None: argmax
    validation_qwk: float  # with those thresholds (optimistic: tuned on the same answers)
    test: dict[str, object]  # QWK, accuracy, macro F1 on test (reported, never used to choose)
    crossfit_predicted: NDArray[np.int64]  # the validation predictions behind crossfit_qwk

    @property
    def names(self) -> list[str]:
        return [member.name for member in self.members]

    @property
    def trunk_runs(self) -> int:
        return len({member.backbone for member in self.members if member.backbone})

    @property
    def head_runs(self) -> int:
        return len(self.members)


def folds_of(truth: list[int], seed: int = 13) -> NDArray[np.int64]:
    """A fold number per validation answer, stratified by score (sklearn's StratifiedKFold)."""
    from sklearn.model_selection import StratifiedKFold

    smallest = min(np.bincount(truth)[np.bincount(truth) > 0])
    splitter = StratifiedKFold(n_splits=max(2, min(FOLDS, int(smallest))), shuffle=True, random_state=seed)
    fold = np.zeros(len(truth), dtype=np.int64)
    for number, (_, held_out) in enumerate(splitter.split(np.zeros(len(truth)), truth)):
        fold[held_out] = number
    return fold


def crossfit_qwk(probabilities: NDArray[np.float64], truth: list[int], fold: NDArray[np.int64]) -> float:
    classes = list(range(probabilities.shape[1]))
    return quadratic_weighted_kappa(truth, list(crossfit_predictions(probabilities, truth, fold)), classes)


def crossfit_predictions(probabilities: NDArray[np.float64], truth: list[int],
                         fold: NDArray[np.int64]) -> NDArray[np.int64]:
    """Each validation answer decoded with thresholds tuned on the other folds."""
    predicted = np.zeros(len(truth), dtype=np.int64)
    truth_array = np.asarray(truth)
    for number in np.unique(fold):
        fit = fold != number
        thresholds, _ = tune_thresholds(probabilities[fit], list(truth_array[fit]))
        predicted[~fit] = decode(probabilities[~fit], thresholds)
    return predicted


def evaluate_subset(members: tuple[Candidate, ...], truth: dict[str, list[int]],
                    fold: NDArray[np.int64], fixed: FixedDecoding | None = None) -> Choice:
    weights = [1.0] * len(members)
    mixed = {split: combine([member.probabilities[split] for member in members], weights) for split in truth}
    classes = list(range(mixed["validation"].shape[1]))
    if fixed is not None or len(truth["validation"]) < TUNE_MIN_VALIDATION:
        # decided elsewhere, or the small-item rule (training/recipes.py): fixed cuts
        thresholds = fixed.thresholds if fixed is not None else [k + 0.5 for k in range(len(classes) - 1)]
        decoded = np.asarray(decode(mixed["validation"], thresholds), dtype=np.int64)
        validation_qwk = quadratic_weighted_kappa(truth["validation"], list(decoded), classes)
        return Choice(members, validation_qwk, thresholds, validation_qwk,
                      evaluate(truth["test"], list(decode(mixed["test"], thresholds)), classes), decoded)
    thresholds, validation_qwk = tune_thresholds(mixed["validation"], truth["validation"])
    test = evaluate(truth["test"], list(decode(mixed["test"], thresholds)), classes)
    predicted = crossfit_predictions(mixed["validation"], truth["validation"], fold)
    return Choice(members, quadratic_weighted_kappa(truth["validation"], list(predicted), classes), thresholds,
                  validation_qwk, test, predicted)


@dataclass(frozen=True)
class FixedDecoding:
    """Decode every subset with these thresholds (None: argmax), chosen elsewhere: add-item's cross-validated
    choice (training/crossval.py) decided the decoding on every answer, not on this item's validation split."""
    thresholds: list[float] | None


def member_subsets(trunks: Sequence[str], max_trunks: int = DEFAULT_MAX_TRUNKS) -> list[tuple[int, ...]]:
    """Candidate index tuples: the first (the item's own adapter) in every one with any of the others, fewest
    members first, within the trunk budget. trunks: each candidate's backbone, "" for the lexical member."""
    subsets = [(0, *rest) for size in range(len(trunks)) for rest in combinations(range(1, len(trunks)), size)]
    return [subset for subset in subsets if len({trunks[n] for n in subset} - {""}) <= max_trunks]


def choose(candidates: list[Candidate], truth: dict[str, list[int]], max_trunks: int = DEFAULT_MAX_TRUNKS,
           seed: int = 13, fixed: FixedDecoding | None = None) -> tuple[Choice, list[Choice]]:
    """Every subset within the trunk budget, evaluated; the winner has the best cross-fitted validation QWK
    (ties: fewer members). The first candidate (the default backbone's adapter) is in every subset: it is
    what the fast single-head mode serves, and it keeps each subset's trunk cost comparable."""
    fold = folds_of(truth["validation"], seed)
    evaluated = [evaluate_subset(tuple(candidates[n] for n in subset), truth, fold, fixed)
                 for subset in member_subsets([member.backbone for member in candidates], max_trunks)]
    best = max(evaluated, key=lambda choice: (round(choice.crossfit_qwk, 6), -len(choice.members)))
    return best, evaluated
