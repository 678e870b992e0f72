"""Choosing ensembles on validation: cross-fitting, the CPU budget, pooled selection, the combination rule."""

from __future__ import annotations

import numpy as np

from core.ensemble import combine
from training.ensemble import choose, crossfit_qwk, folds_of
from training.ensemble_build import apply_choice, pooled_choice
from training.ensemble_members import Candidate


def noisy(truth: list[int], flip: float, seed: int) -> np.ndarray:
    """Probabilities that put most mass on the truth, on the wrong class for a `flip` share of answers."""
    rng = np.random.default_rng(seed)
    classes = np.asarray(truth).copy()
    wrong = rng.random(len(truth)) < flip
    classes[wrong] = (classes[wrong] + rng.integers(1, 3, wrong.sum())) % 3
    probabilities = np.full((len(truth), 3), 0.1)
    probabilities[np.arange(len(truth)), classes] = 0.8
    return probabilities


def candidate(name: str, backbone: str, truth: dict[str, list[int]], flip: float, seed: int) -> Candidate:
    return Candidate(name, "lexical" if not backbone else "adapter", backbone,
                     {split: noisy(labels, flip, seed + n) for n, (split, labels) in enumerate(truth.items())})


TRUTH = {"validation": [n % 3 for n in range(150)], "test": [n % 3 for n in range(300)]}


def test_combine_is_the_weighted_mean() -> None:
    first, second = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert np.allclose(combine([first, second], [3, 1]), [[0.75, 0.25]])


def test_crossfit_scores_each_fold_with_thresholds_fitted_elsewhere() -> None:
    perfect = np.eye(3)[TRUTH["validation"]]
    fold = folds_of(TRUTH["validation"])
    assert sorted(set(fold)) == [0, 1, 2, 3, 4]
    assert crossfit_qwk(perfect, TRUTH["validation"], fold) == 1.0
    assert crossfit_qwk(noisy(TRUTH["validation"], 0.5, 1), TRUTH["validation"], fold) < 0.9


def test_independent_members_beat_one_and_the_budget_limits_trunks() -> None:
    members = [candidate("a@v1", "minilm", TRUTH, 0.35, 1), candidate("b@v1", "e5", TRUTH, 0.35, 11),
               candidate("lexical", "", TRUTH, 0.35, 21)]
    best, evaluated = choose(members, TRUTH, max_trunks=2)
    assert len(evaluated) == 4 and all(choice.members[0].name == "a@v1" for choice in evaluated)
    assert len(best.members) > 1  # three independent errors voted down beat any one of them
    _, within_one = choose(members, TRUTH, max_trunks=1)
    assert all(choice.trunk_runs == 1 for choice in within_one) and len(within_one) == 2


def test_pooled_choice_takes_the_best_mean_and_sets_what_is_served() -> None:
    def ensemble(qwks: dict[str, float]) -> dict[str, object]:
        return {"fingerprint": "f", "candidates": [
            {"signature": kind, "members": kind.split("+"), "entries": [{"kind": part} for part in kind.split("+")],
             "crossfit_validation_qwk": qwk, "thresholds": [0.5, 1.5], "review_threshold": 0.7}
            for kind, qwk in qwks.items()]}

    items = [ensemble({"m": 0.80, "m+l": 0.79}), ensemble({"m": 0.70, "m+l": 0.73})]
    kind, means = pooled_choice(items)
    assert kind == "m+l" and means["m"] == 0.75
    served = apply_choice(items[0], kind)
    assert [entry["kind"] for entry in served["members"]] == ["m", "l"] and served["selection"] == "m+l"
    assert apply_choice(items[0])["chosen"]["signature"] == "m"  # per item: its own best
    assert served["version"] != apply_choice(items[0])["version"]  # other members, another version
