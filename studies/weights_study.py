"""`python -m studies.weights_study`: do fitted member weights or a stacker beat the equal-weight mean?

Reads the candidates' probabilities that `python -m training ensemble` keeps (runs/ensemble_probabilities/) and,
for every kind of ensemble with two members or more, compares three ways of combining its members by 5-fold
cross-fitted validation QWK, on the folds the shipped choice uses:
- equal: the mean of the members' probabilities, thresholds tuned (what is shipped);
- weights: member weights on a simplex grid (steps of 1/4), chosen together with the thresholds on four folds
  and applied to the fifth;
- stacker: multinomial logistic regression on the members' log-probabilities, fitted on four folds, its
  thresholds tuned on its own cross-validated predictions there, applied to the fifth.
Each rule refitted on the whole validation set gives the test QWK, reported only: test chooses nothing.
By default the study looks at the LEADING kinds of reports/levers.json (`python -m studies.lever_study`):
those with the best mean cross-fitted validation QWK under equal weights (fitting weights is ~100 s of CPU
per kind and item, so not every kind is tried).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from core.decoding import decode
from core.ensemble import combine
from training.asap import ASAP_ITEMS
from training.decoding import tune_thresholds
from training.ensemble import DEFAULT_MAX_TRUNKS, folds_of, member_subsets
from training.metrics import quadratic_weighted_kappa

REPO = Path(__file__).resolve().parents[1]
PROBABILITIES = REPO / "runs" / "ensemble_probabilities"
RESULTS = REPO / "reports" / "weights.json"
GRID_STEP = 4  # weights in quarters
LEVERS = REPO / "reports" / "levers.json"
LEADING = 3
Arrays = list[NDArray[np.float64]]
# A rule fitted on (members' probabilities, truth) returns how to score other answers' probabilities.
Rule = Callable[[Arrays, NDArray[np.int64]], Callable[[Arrays], NDArray[np.int64]]]


def load(item_id: str) -> tuple[list[str], dict[str, Arrays], dict[str, NDArray[np.int64]]]:
    path = PROBABILITIES / f"{item_id}.npz"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python -m training ensemble --items all --force` first")
    with np.load(path) as saved:
        labels = [str(label) for label in saved["labels"]]
        members = {split: [saved[f"{split}_{n}"] for n in range(len(labels))] for split in ("validation", "test")}
        truth = {split: saved[f"{split}_truth"] for split in ("validation", "test")}
    return labels, members, truth


def trunk_of(label: str) -> str:
    """The backbone a member label runs on ("minilm-en/s14" -> "minilm-en"); "" for the lexical member."""
    return "" if label == "lexical" else label.split("/")[0]


def kinds(labels: list[str], max_trunks: int = DEFAULT_MAX_TRUNKS) -> list[tuple[int, ...]]:
    """The ensemble build's subsets (training/ensemble.py) of two members or more."""
    return [subset for subset in member_subsets([trunk_of(label) for label in labels], max_trunks)
            if len(subset) > 1]


def _decoder(probabilities: NDArray[np.float64], truth: NDArray[np.int64]) -> list[float]:
    thresholds, _ = tune_thresholds(probabilities, list(truth))
    return thresholds


def equal_rule(members: Arrays, truth: NDArray[np.int64]) -> Callable[[Arrays], NDArray[np.int64]]:
    thresholds = _decoder(combine(members, [1.0] * len(members)), truth)
    return lambda others: decode(combine(others, [1.0] * len(others)), thresholds)


def weights_rule(members: Arrays, truth: NDArray[np.int64]) -> Callable[[Arrays], NDArray[np.int64]]:
    best: tuple[float, list[float], list[float]] = (-2.0, [], [])
    for steps in product(range(GRID_STEP + 1), repeat=len(members)):
        if sum(steps) != GRID_STEP or steps[0] == 0:  # the item's own adapter always takes part
            continue
        weights = [step / GRID_STEP for step in steps]
        thresholds, qwk = tune_thresholds(combine(members, weights), list(truth))
        if qwk > best[0] + 1e-9:
            best = (qwk, weights, thresholds)
    _, weights, thresholds = best
    return lambda others: decode(combine(others, weights), thresholds)


def _features(members: Arrays) -> NDArray[np.float64]:
    return np.log(np.concatenate(members, axis=1) + 1e-6)


def stacker_rule(members: Arrays, truth: NDArray[np.int64]) -> Callable[[Arrays], NDArray[np.int64]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    classes = members[0].shape[1]
    model = LogisticRegression(C=1.0, max_iter=2000)
    inner = cross_val_predict(model, _features(members), truth, cv=4, method="predict_proba")
    thresholds = _decoder(_full_width(inner, np.unique(truth), classes), truth)
    model.fit(_features(members), truth)
    return lambda others: decode(_full_width(model.predict_proba(_features(others)), model.classes_, classes),
                                 thresholds)


def _full_width(probabilities: NDArray[np.float64], seen: NDArray[np.int64], classes: int) -> NDArray[np.float64]:
    """A class absent from the fitting answers gets probability 0 (the thresholds need every column)."""
    full = np.zeros((len(probabilities), classes))
    full[:, seen] = probabilities
    return full


RULES: dict[str, Rule] = {"equal": equal_rule, "weights": weights_rule, "stacker": stacker_rule}


def crossfit(rule: Rule, members: Arrays, truth: NDArray[np.int64], fold: NDArray[np.int64]) -> float:
    predicted = np.zeros(len(truth), dtype=np.int64)
    for number in np.unique(fold):
        fit = fold != number
        score = rule([member[fit] for member in members], truth[fit])
        predicted[~fit] = score([member[~fit] for member in members])
    return quadratic_weighted_kappa(list(truth), list(predicted), list(range(members[0].shape[1])))


def leading_kinds(count: int = LEADING) -> list[str] | None:
    """The ensemble kinds (two members or more) with the best equal-weight cross-fitted validation QWK."""
    if not LEVERS.is_file():
        return None
    levers: dict[str, Any] = json.loads(LEVERS.read_text())
    mixed = [kind for kind, entry in levers.items() if entry["member_runs"] > 1]
    return sorted(mixed, key=lambda kind: -levers[kind]["crossfit_validation_qwk"])[:count]


def study_item(item_id: str, wanted: list[str] | None = None) -> dict[str, Any]:
    labels, members, truth = load(item_id)
    fold = folds_of(list(truth["validation"]))
    classes = list(range(members["validation"][0].shape[1]))
    results: dict[str, Any] = {}
    for subset in kinds(labels):
        kind = "+".join(labels[n] for n in subset)
        if wanted is not None and kind not in wanted:
            continue
        chosen = {split: [members[split][n] for n in subset] for split in members}
        results[kind] = {}
        for name, rule in RULES.items():
            served = rule(chosen["validation"], truth["validation"])
            results[kind][name] = {
                "crossfit_validation_qwk": round(crossfit(rule, chosen["validation"], truth["validation"], fold), 4),
                "test_qwk": round(quadratic_weighted_kappa(list(truth["test"]), list(served(chosen["test"])),
                                                           classes), 4)}
    return results


def markdown(results: dict[str, dict[str, Any]]) -> str:
    kinds_all = sorted({kind for item in results.values() for kind in item})
    lines = ["| members | rule | items | cross-fitted val QWK | test QWK |", "|---|---|---:|---:|---:|"]
    for kind in kinds_all:
        items = [item for item in results.values() if kind in item]
        if len(items) != len(results):
            continue
        for name in RULES:
            val = np.mean([item[kind][name]["crossfit_validation_qwk"] for item in items])
            test = np.mean([item[kind][name]["test_qwk"] for item in items])
            lines.append(f"| {kind} | {name} | {len(items)} | {val:.4f} | {test:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.weights_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", nargs="+", default=ASAP_ITEMS)
    parser.add_argument("--kinds", nargs="+", default=None,
                        help=f"ensemble kinds to study (default: the {LEADING} leading ones of reports/levers.json)")
    parser.add_argument("--force", action="store_true", help="redo items already in reports/weights.json")
    args = parser.parse_args(argv)
    wanted = args.kinds or leading_kinds()
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() and not args.force else {}
    for item_id in tqdm(args.items, desc="weights study", unit="item"):
        if item_id not in results:
            results[item_id] = study_item(item_id, wanted)
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
