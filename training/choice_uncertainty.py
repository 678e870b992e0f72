"""How sure a choice between kinds of ensemble is, and a rule that uses it: the cheapest kind whose loss
against the best is within the noise of the validation answers (`scorer ensemble --selection pooled-cheapest`;
the default serves the best mean and states this table beside it).

Each kind's cross-fitted validation predictions (training/ensemble.py: thresholds tuned on the other folds)
are resampled with a paired bootstrap: per replicate, every item's validation answers are drawn with
replacement once and all kinds are scored on the same draw, so the spread is that of the *difference* between
two kinds, not of each kind alone. A kind is within the noise when the interval of the best kind's gain over
it reaches zero; among those, the one with the fewest trunk runs, then head runs, is the cheapest within the
noise (ties: the higher mean). The test answers play no part.

The QWK here is batched over replicates (one bincount per item and kind); sklearn scores one pair at a time,
which is ~100x slower for the thousands of replicates this needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

REPLICATES = 1000
LEVEL = 0.95
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"  # label k is the k-th character: one compact line per candidate
RULE = ("paired bootstrap over each item's validation answers (cross-fitted predictions); the cheapest kind "
        "(trunk runs, then head runs) whose gap to the best kind's mean has a 95 % interval reaching zero")


def encode_labels(labels: Sequence[int] | NDArray[Any]) -> str:
    return "".join(DIGITS[int(label)] for label in labels)


def decode_labels(text: str) -> NDArray[np.int64]:
    return np.asarray([DIGITS.index(character) for character in text], dtype=np.int64)


def batched_qwk(truth: NDArray[np.int64], predicted: NDArray[np.int64], classes: int) -> NDArray[np.float64]:
    """QWK of each row: truth and predicted are (replicates, answers) label arrays."""
    replicates = truth.shape[0]
    cells = (np.arange(replicates)[:, None] * classes + truth) * classes + predicted
    observed = np.bincount(cells.ravel(), minlength=replicates * classes * classes).astype(np.float64)
    observed = observed.reshape(replicates, classes, classes)
    grid = np.arange(classes)
    weights = (grid[:, None] - grid[None, :]) ** 2 / max(classes - 1, 1) ** 2
    expected = observed.sum(axis=2)[:, :, None] * observed.sum(axis=1)[:, None, :] / truth.shape[1]
    disagreement = (weights * observed).sum(axis=(1, 2))
    chance = (weights * expected).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = 1.0 - disagreement / chance
    return np.where(chance > 0, kappa, np.where(disagreement == 0, 1.0, 0.0))


def cost_of(candidate: dict[str, Any]) -> tuple[int, int]:
    return int(candidate["trunk_runs"]), int(candidate["head_runs"])


def pooled_decision(ensembles: list[dict[str, Any]], replicates: int = REPLICATES,
                    seed: int = 13) -> dict[str, Any] | None:
    """The cheapest kind within the noise and the best kind, with every kind's mean, gap and interval; None when
    an ensemble lacks its cross-fitted predictions (built before they were kept: rebuild with --force)."""
    if not ensembles or any("validation_truth" not in ensemble for ensemble in ensembles):
        return None
    offered: list[dict[str, dict[str, Any]]] = [
        {c["signature"]: c for c in ensemble["candidates"] if "crossfit_predicted" in c} for ensemble in ensembles]
    kinds = sorted(set.intersection(*(set(item) for item in offered)))
    if not kinds:
        return None
    rng = np.random.default_rng(seed)
    point = np.zeros(len(kinds))
    sampled = np.zeros((replicates, len(kinds)))
    for ensemble, candidates in zip(ensembles, offered, strict=True):
        truth = decode_labels(ensemble["validation_truth"])
        classes = len(ensemble["labels"])
        draws = rng.integers(0, len(truth), size=(replicates, len(truth)))
        for column, kind in enumerate(kinds):
            predicted = decode_labels(candidates[kind]["crossfit_predicted"])
            point[column] += batched_qwk(truth[None, :], predicted[None, :], classes)[0] / len(ensembles)
            sampled[:, column] += batched_qwk(truth[draws], predicted[draws], classes) / len(ensembles)
    best = int(np.argmax(point))
    tail = (1 - LEVEL) / 2 * 100
    costs = {kind: cost_of(offered[0][kind]) for kind in kinds}
    table: dict[str, dict[str, Any]] = {}
    for column, kind in enumerate(kinds):
        gap = sampled[:, best] - sampled[:, column]
        low, high = np.percentile(gap, [tail, 100 - tail])
        table[kind] = {"mean_crossfit_qwk": round(float(point[column]), 4),
                       "gap_to_best": round(float(point[best] - point[column]), 4),
                       "gap_interval": [round(float(low), 4), round(float(high), 4)],
                       "within_noise": bool(low <= 0.0), "trunk_runs": costs[kind][0], "head_runs": costs[kind][1]}
    eligible = [kind for kind in kinds if table[kind]["within_noise"]]
    chosen = min(eligible, key=lambda kind: (*costs[kind], -point[kinds.index(kind)]))
    return {"cheapest_within_noise": chosen, "best": kinds[best], "rule": RULE, "replicates": replicates, "seed": seed,
            "items": len(ensembles), "kinds": table}


def decision_table(decision: dict[str, Any]) -> str:
    """The decision as a plain-text table, cheapest kinds first (what `scorer ensemble` prints)."""
    rows = sorted(decision["kinds"].items(), key=lambda kv: (kv[1]["trunk_runs"], kv[1]["head_runs"]))
    lines = [f"{'kind':<52} trunks heads  mean QWK  gap to best (95 % interval)"]
    for kind, row in rows:
        low, high = row["gap_interval"]
        marks = [label for label, key in (("served", "served"), ("best", "best"),
                                          ("cheapest within noise", "cheapest_within_noise"))
                 if decision.get(key) == kind]
        mark = f" <- {', '.join(marks)}" if marks else ""
        lines.append(f"{kind:<52} {row['trunk_runs']:>6} {row['head_runs']:>5}  {row['mean_crossfit_qwk']:.4f}  "
                     f"{row['gap_to_best']:+.4f} ({low:+.4f}, {high:+.4f}){mark}")
    return "\n".join(lines)
