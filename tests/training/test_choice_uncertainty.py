"""The pooled choice with stated uncertainty: batched QWK, the bootstrap's intervals, cheaper within the noise."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.choice_uncertainty import (
    batched_qwk,
    decision_table,
    decode_labels,
    encode_labels,
    pooled_decision,
)
from training.metrics import quadratic_weighted_kappa


def test_batched_qwk_equals_the_one_at_a_time_definition() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, size=(20, 90))
    predicted = np.where(rng.random((20, 90)) < 0.7, truth, rng.integers(0, 4, size=(20, 90)))
    batched = batched_qwk(truth, predicted, 4)
    one_by_one = [quadratic_weighted_kappa(list(t), list(p), [0, 1, 2, 3])
                  for t, p in zip(truth, predicted, strict=True)]
    assert np.allclose(batched, one_by_one)
    constant = np.zeros((1, 5), dtype=np.int64)
    assert batched_qwk(constant, constant, 3)[0] == quadratic_weighted_kappa([0] * 5, [0] * 5, [0, 1, 2])


def test_labels_travel_as_one_line() -> None:
    assert encode_labels([0, 3, 11]) == "03b"
    assert decode_labels("03b").tolist() == [0, 3, 11]


def _ensemble(truth: np.ndarray, accuracy: dict[str, float], seed: int) -> dict[str, Any]:
    """An item whose kinds are right on `accuracy` of its answers (off by one elsewhere); "a" is one trunk,
    "a+b" two."""
    rng = np.random.default_rng(seed)
    candidates = []
    for kind, share in accuracy.items():
        right = rng.random(len(truth)) < share
        predicted = np.where(right, truth, np.clip(truth + rng.choice([-1, 1], len(truth)), 0, 3))
        candidates.append({"signature": kind, "members": kind.split("+"), "trunk_runs": len(kind.split("+")),
                           "head_runs": len(kind.split("+")), "crossfit_predicted": encode_labels(predicted)})
    return {"labels": ["0", "1", "2", "3"], "validation_truth": encode_labels(truth), "candidates": candidates}


def test_a_lead_within_the_noise_serves_the_cheaper_kind_and_a_clear_one_the_best() -> None:
    truth = np.random.default_rng(0).integers(0, 4, 200)
    close = [_ensemble(truth, {"a": 0.80, "a+b": 0.81}, seed) for seed in range(3)]
    decision = pooled_decision(close, replicates=400)
    assert decision is not None
    assert decision["best"] == "a+b" or decision["kinds"]["a+b"]["gap_to_best"] == 0.0
    assert decision["cheapest_within_noise"] == "a" and decision["kinds"]["a"]["within_noise"]
    low, high = decision["kinds"]["a"]["gap_interval"]
    assert low <= 0.0 <= high or decision["best"] == "a"
    clear = [_ensemble(truth, {"a": 0.60, "a+b": 0.90}, seed) for seed in range(3)]
    decision = pooled_decision(clear, replicates=400)
    assert decision is not None and decision["cheapest_within_noise"] == decision["best"] == "a+b"
    assert decision["kinds"]["a"]["gap_interval"][0] > 0.0 and not decision["kinds"]["a"]["within_noise"]
    decision["served"] = "a+b"
    assert "<- served, best, cheapest within noise" in decision_table(decision).splitlines()[2]  # a+b: dearer


def test_ensembles_built_before_predictions_were_kept_have_no_decision() -> None:
    truth = np.arange(40) % 4
    old = _ensemble(truth, {"a": 0.8}, 1)
    del old["validation_truth"]
    assert pooled_decision([old, _ensemble(truth, {"a": 0.8}, 2)]) is None
