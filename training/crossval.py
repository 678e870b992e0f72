"""Cross-validated choice for items of a few hundred answers (issue 29): what to serve chosen on every answer.

With 300 answers the usual split leaves ~22 validation answers to choose on and ~60 test answers to judge on,
so choices and the floor follow noise. Here the item's answers are cut into K stratified folds; per fold a
small-recipe adapter is trained on the rest (early stopping on a 10 % inner validation split, as add-item
trains) and the lexical member is fitted on the rest, and both predict the held-out fold. On those out-of-fold
probabilities of *every* answer the served configuration is chosen:
- members: the adapter alone, or with the lexical member (mean probabilities);
- decoding: fixed cuts of the expected score at k + 0.5, argmax, or thresholds tuned on the answers (scored
  cross-fitted: each fold's answers decoded with thresholds tuned on the other folds);
- steps: the median of the folds' early-stopped steps, scaled to the whole item at the same number of epochs.
The estimate of the chosen configuration comes with a 95 % bootstrap interval over the answers; it is a little
optimistic (the best of six is chosen on the same predictions), which the interval does not cover.
Then the served model is trained on all the answers for the chosen steps (`refit_config`). Class weighting
stays the recipe's rule (a second set of folds would double the cost).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from core.decoding import decode
from core.ensemble import combine
from core.lexical_runtime import LexicalHead
from training.backbones import ResolvedBackbone
from training.choice_uncertainty import batched_qwk
from training.data import ItemData, stratified_split
from training.decoding import tune_thresholds
from training.lexical import fit_lexical
from training.metrics import quadratic_weighted_kappa
from training.pipeline import encode_item, run_training
from training.trainer import FeatureSource, TrainConfig, predict_proba

CURVE_SHARE = 0.1  # of the answers, the refit's curve slice (refit_item)

FOLDS = 5
INNER_VALIDATION = 0.1  # each fold's early stopping, as add-item's own split
DECODINGS = ("cuts", "argmax", "tuned")
REPLICATES = 1000
Rows = list[tuple[str, int]]


@dataclass(frozen=True)
class Configuration:
    lexical: bool  # the lexical member beside the adapter
    decoding: str  # one of DECODINGS

    @property
    def label(self) -> str:
        return ("adapter + lexical" if self.lexical else "adapter alone") + f", {self.decoding}"


@dataclass
class CrossValidation:
    truth: NDArray[np.int64]  # 0-based scores of every answer, in the order of `answers`
    out_of_fold: dict[str, NDArray[np.float64]]  # "adapter" / "lexical" -> probabilities from held-out folds
    fold: NDArray[np.int64]  # each answer's fold
    kept_steps: list[int]  # per fold, the early-stopped adapter's steps
    fold_train_answers: list[int]
    qwk: dict[Configuration, float]
    chosen: Configuration
    interval: tuple[float, float]  # 95 % bootstrap interval of the chosen configuration's QWK
    thresholds: list[float] | None  # what the served model decodes with (tuned on every answer when chosen)
    refit_steps: int

    def summary(self) -> dict[str, object]:
        return {"folds": int(self.fold.max()) + 1, "answers": len(self.truth), "chosen": self.chosen.label,
                "qwk": round(self.qwk[self.chosen], 4), "interval": [round(v, 4) for v in self.interval],
                "configurations": {c.label: round(q, 4) for c, q in self.qwk.items()},
                "kept_steps": self.kept_steps, "refit_steps": self.refit_steps}


def fold_numbers(truth: NDArray[np.int64], folds: int, seed: int) -> NDArray[np.int64]:
    """Stratified by score (sklearn); a score with fewer answers than folds simply misses some folds."""
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = np.bincount(truth)
    stratify = counts[counts > 0].max() >= folds
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed) if stratify else \
        KFold(folds, shuffle=True, random_state=seed)
    fold = np.zeros(len(truth), dtype=np.int64)
    for number, (_, held_out) in enumerate(splitter.split(np.zeros(len(truth)), truth)):
        fold[held_out] = number
    return fold


def predictions(probabilities: NDArray[np.float64], truth: NDArray[np.int64], fold: NDArray[np.int64],
                decoding: str) -> NDArray[np.int64]:
    classes = probabilities.shape[1]
    if decoding == "argmax":
        return np.asarray(decode(probabilities, None), dtype=np.int64)
    if decoding == "cuts":
        return np.asarray(decode(probabilities, [k + 0.5 for k in range(classes - 1)]), dtype=np.int64)
    predicted = np.zeros(len(truth), dtype=np.int64)
    for number in np.unique(fold):  # tuned: each fold decoded with thresholds tuned on the others
        fit = fold != number
        thresholds, _ = tune_thresholds(probabilities[fit], list(truth[fit]))
        predicted[~fit] = decode(probabilities[~fit], thresholds)
    return predicted


def cross_validate(answers: Rows, item: ItemData, backbone: ResolvedBackbone, config: TrainConfig,
                   lexical: bool = True, folds: int = FOLDS,
                   progress: Callable[[str], None] | None = None) -> CrossValidation:
    """`answers`: every answer the item has (text, score); `item` gives the id and score range; `config` is
    the recipe's (training/recipes.py)."""
    low, classes = item.score_range.low, item.score_range.size
    truth = np.asarray([score - low for _, score in answers], dtype=np.int64)
    fold = fold_numbers(truth, folds, config.seed)
    out_of_fold = {name: np.zeros((len(answers), classes)) for name in (("adapter", "lexical") if lexical
                                                                          else ("adapter",))}
    kept, sizes = [], []
    for number in range(folds):
        held = np.flatnonzero(fold == number)
        rest = [answers[i] for i in np.flatnonzero(fold != number)]
        inner_train, inner_validation = stratified_split(rest, INNER_VALIDATION, config.seed)
        fold_item = replace(item, item_id=f"{item.item_id}-fold{number + 1}", train=inner_train,
                            validation=inner_validation, test=[answers[i] for i in held])
        if progress:
            progress(f"fold {number + 1}/{folds}")
        result = run_training(fold_item, backbone, config, f"{item.item_id} fold {number + 1}/{folds}")
        encoded = encode_item(replace(fold_item, train=[], validation=[]), backbone)["test"][0]  # held-out only
        source = FeatureSource(result.model, encoded, cache_trunk=False, batch_size=32)
        out_of_fold["adapter"][held] = predict_proba(result.model, source, 32)
        kept.append(result.kept_steps)
        sizes.append(len(inner_train))
        if lexical:
            try:
                out_of_fold["lexical"][held] = lexical_probabilities(rest, fold_item.test, item, config.seed)
            except ValueError:  # one score only in these folds' answers: the adapter is compared alone
                lexical = False
                del out_of_fold["lexical"]
    qwk = {}
    for configuration in [Configuration(with_lexical, decoding) for with_lexical in (False, True)[:len(out_of_fold)]
                          for decoding in DECODINGS]:
        predicted = predictions(mixed(out_of_fold, configuration), truth, fold, configuration.decoding)
        qwk[configuration] = quadratic_weighted_kappa(list(truth), list(predicted), list(range(classes)))
    # Best QWK; ties to the adapter alone, then to the recipe's fixed cuts (the order of DECODINGS).
    chosen = max(qwk, key=lambda c: (round(qwk[c], 6), not c.lexical, -DECODINGS.index(c.decoding)))
    chosen_predicted = predictions(mixed(out_of_fold, chosen), truth, fold, chosen.decoding)
    return CrossValidation(truth, out_of_fold, fold, kept, sizes, qwk, chosen,
                           bootstrap_interval(truth, chosen_predicted, classes, config.seed),
                           served_thresholds(mixed(out_of_fold, chosen), truth, chosen.decoding),
                           refit_steps(kept, sizes, len(answers)))


def lexical_probabilities(fit_on: Rows, scored: Rows, item: ItemData, seed: int) -> NDArray[np.float64]:
    """The lexical member fitted on `fit_on` (it needs no early stopping: every answer is fitted on), its
    probabilities for `scored`."""
    low = item.score_range.low
    graph = fit_lexical([text for text, _ in fit_on], [score - low for _, score in fit_on], item.score_range.size,
                        seed)
    return LexicalHead(graph).probabilities([text for text, _ in scored])


def mixed(out_of_fold: dict[str, NDArray[np.float64]], configuration: Configuration) -> NDArray[np.float64]:
    members = [out_of_fold["adapter"], *([out_of_fold["lexical"]] if configuration.lexical else [])]
    return combine(members, [1.0] * len(members))


def served_thresholds(probabilities: NDArray[np.float64], truth: NDArray[np.int64],
                      decoding: str) -> list[float] | None:
    if decoding == "argmax":
        return None
    if decoding == "cuts":
        return [k + 0.5 for k in range(probabilities.shape[1] - 1)]
    return tune_thresholds(probabilities, list(truth))[0]


def bootstrap_interval(truth: NDArray[np.int64], predicted: NDArray[np.int64], classes: int,
                       seed: int) -> tuple[float, float]:
    draws = np.random.default_rng(seed).integers(0, len(truth), size=(REPLICATES, len(truth)))
    values = batched_qwk(truth[draws], predicted[draws], classes)
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def refit_steps(kept: list[int], fold_train_answers: list[int], answers: int) -> int:
    """The folds' median early-stopped steps, scaled from a fold's training answers to all of them (the same
    number of epochs over more answers)."""
    return max(1, round(statistics.median(kept) * answers / statistics.mean(fold_train_answers)))


def refit_item(item: ItemData, answers: Rows, seed: int) -> ItemData:
    """The item a cross-validated choice is refit on: every answer in train, a stratified slice of them as
    validation, which only feeds the trainer's per-epoch curve (trained on too; nothing is chosen on it)."""
    _, curve = stratified_split(answers, CURVE_SHARE, seed)
    return replace(item, train=answers, validation=curve)


def refit_config(config: TrainConfig, validation: CrossValidation) -> TrainConfig:
    """Exactly `refit_steps` steps on every answer, no early stopping (nothing is held out to stop on), decoded
    as chosen (thresholds: the served model's own, tuned on every answer's out-of-fold probabilities)."""
    decoding = {"cuts": "fixed", "argmax": "argmax", "tuned": "fixed"}[validation.chosen.decoding]
    return replace(config, min_steps=validation.refit_steps, max_epochs=1, patience=10**9,
                   decoding=decoding)  # type: ignore[arg-type]
