"""Cross-validated choice (training/crossval.py) on the tiny backbone: every answer predicted out of fold once,
the choice the best configuration, the refit trains exactly the steps it says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import tiny_item
from training.backbones import resolve_backbone
from training.crossval import (
    Configuration,
    bootstrap_interval,
    cross_validate,
    fold_numbers,
    predictions,
    refit_config,
    refit_steps,
)
from training.pipeline import run_training
from training.trainer import TrainConfig


def test_folds_are_stratified_and_cover_every_answer() -> None:
    truth = np.array([0] * 20 + [1] * 10 + [2] * 5)
    fold = fold_numbers(truth, 5, seed=3)
    assert sorted(set(fold.tolist())) == [0, 1, 2, 3, 4]
    for number in range(5):  # each score spread over the folds
        assert np.bincount(truth[fold == number], minlength=3).tolist() == [4, 2, 1]
    # too few answers of every score to stratify: plain folds, still every answer once
    assert sorted(np.bincount(fold_numbers(np.array([0, 1, 2, 3, 4, 5, 6]), 3, seed=1)).tolist()) == [2, 2, 3]


def test_tuned_decoding_is_scored_on_folds_it_was_not_tuned_on() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 60)
    probabilities = rng.dirichlet(np.ones(3), 60)  # noise: thresholds tuned in-sample would look better
    fold = fold_numbers(truth, 5, seed=0)
    tuned = predictions(probabilities, truth, fold, "tuned")
    assert tuned.shape == truth.shape and set(tuned.tolist()) <= {0, 1, 2}
    cuts = predictions(probabilities, truth, fold, "cuts")
    expected = probabilities @ np.arange(3)
    assert (cuts == np.digitize(expected, [0.5, 1.5])).all()


def test_refit_steps_keep_the_epochs_over_more_answers() -> None:
    assert refit_steps([100, 120, 140], [80, 80, 80], 100) == 150  # median 120 x 100/80
    low, high = bootstrap_interval(np.array([0, 1, 2] * 20), np.array([0, 1, 2] * 20), 3, seed=1)
    assert low == high == 1.0


def test_cross_validation_chooses_and_refits_exactly(tiny_backbone: Path) -> None:
    item = tiny_item(copies=5)  # 30 answers, 10 of each score
    backbone = resolve_backbone(str(tiny_backbone))
    config = TrainConfig(split_layer=1, max_epochs=2, min_steps=6, batch_size=8, learning_rate=5e-3, seed=2)
    validation = cross_validate(item.train, item, backbone, config, folds=3)
    assert validation.out_of_fold["adapter"].shape == (30, 3)
    assert np.allclose(validation.out_of_fold["adapter"].sum(axis=1), 1.0)  # every answer predicted once
    assert np.allclose(validation.out_of_fold["lexical"].sum(axis=1), 1.0)
    assert len(validation.qwk) == 6 and validation.qwk[validation.chosen] == max(validation.qwk.values())
    low, high = validation.interval
    assert low <= validation.qwk[validation.chosen] <= high
    assert all(steps >= 6 for steps in validation.kept_steps)  # the recipe's floor holds in every fold
    refit = refit_config(config, validation)
    result = run_training(item, backbone, refit, "refit")
    steps_per_epoch = -(-len(item.train) // refit.batch_size)
    assert validation.refit_steps <= result.steps < validation.refit_steps + steps_per_epoch
    assert result.kept_steps == result.steps  # no early stopping: the last step is what is served
    assert Configuration(True, "argmax").label == "adapter + lexical, argmax"
