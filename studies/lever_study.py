"""`python -m studies.lever_study`: what each lever gives, on validation (what chooses) and on test (reported).

From the candidates' probabilities the ensemble build keeps (runs/ensemble_probabilities/), every way of
scoring an item is rebuilt exactly as the build scores it — members' probabilities averaged, thresholds tuned
on the whole validation set — and compared with the item's own MiniLM adapter alone:
- each adapter alone (the own one, the E5 one, the both-raters one, another seed, ...);
- every ensemble kind the build evaluates (the own adapter plus any other members within the trunk budget).
Per kind: the mean over items of the 5-fold cross-fitted validation QWK (what the shipped choice compares),
the mean test QWK, and its difference from the own adapter alone with a 95 % paired bootstrap interval
(each item's test answers resampled, the same resample for both). Writes reports/levers.json, which the
accuracy report renders; test answers choose nothing here either.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from core.decoding import decode
from core.ensemble import combine
from studies.report_ensembles import paired_bootstrap
from studies.weights_study import kinds, load, trunk_of
from training.asap import ASAP_ITEMS
from training.decoding import tune_thresholds
from training.ensemble import crossfit_qwk, folds_of
from training.metrics import quadratic_weighted_kappa

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "reports" / "levers.json"
OWN = "minilm-en"  # the item's own adapter: what every lever is compared with


def ways(labels: list[str]) -> list[tuple[int, ...]]:
    """Each adapter alone, then every ensemble the build evaluates (the own adapter with others in budget)."""
    alone = [(n,) for n, label in enumerate(labels) if label != "lexical"]
    return alone + kinds(labels)


def score_way(labels: list[str], members: dict[str, list[NDArray[np.float64]]],
              truth: dict[str, NDArray[np.int64]], way: tuple[int, ...]) -> dict[str, Any]:
    """One way of scoring an item, as the build scores it: cross-fitted validation QWK, test QWK, predictions."""
    classes = list(range(members["validation"][0].shape[1]))
    mixed = {split: combine([members[split][n] for n in way], [1.0] * len(way)) for split in members}
    thresholds, _ = tune_thresholds(mixed["validation"], list(truth["validation"]))
    predicted = decode(mixed["test"], thresholds)
    return {"crossfit_validation_qwk": crossfit_qwk(mixed["validation"], list(truth["validation"]),
                                                    folds_of(list(truth["validation"]))),
            "test_qwk": quadratic_weighted_kappa(list(truth["test"]), list(predicted), classes),
            "truth": [int(value) for value in truth["test"]], "predicted": [int(value) for value in predicted],
            "trunk_runs": len({trunk_of(labels[n]) for n in way} - {""}), "member_runs": len(way)}


def score_item(item_id: str) -> dict[str, dict[str, Any]]:
    """kind -> cross-fitted validation QWK, test QWK, test truth and predictions, serving cost."""
    labels, members, truth = load(item_id)
    return {"+".join(labels[n] for n in way): score_way(labels, members, truth, way) for way in ways(labels)}


def summarise(per_item: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    kinds = {kind for scored in per_item.values() for kind in scored}
    summary = {}
    for kind in sorted(kinds):
        items = [item_id for item_id, scored in per_item.items() if kind in scored]
        if len(items) != len(per_item):  # only kinds every item offers are compared
            continue
        first = per_item[items[0]][kind]
        entry: dict[str, Any] = {
            "items": len(items), "trunk_runs": first["trunk_runs"], "member_runs": first["member_runs"],
            "crossfit_validation_qwk": float(np.mean([per_item[i][kind]["crossfit_validation_qwk"] for i in items])),
            "test_qwk": float(np.mean([per_item[i][kind]["test_qwk"] for i in items])),
            "per_item_test_qwk": {i: round(per_item[i][kind]["test_qwk"], 4) for i in items}}
        if kind != OWN:
            mean, low, high, _ = paired_bootstrap({i: per_item[i][OWN] for i in items},
                                                  {i: per_item[i][kind] for i in items})
            entry["test_vs_own_adapter"] = {"difference": mean, "low": low, "high": high}
        summary[kind] = entry
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.lever_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", nargs="+", default=ASAP_ITEMS)
    args = parser.parse_args(argv)
    per_item = {item_id: score_item(item_id) for item_id in tqdm(args.items, desc="levers", unit="item")}
    summary = summarise(per_item)
    RESULTS.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    for kind, entry in sorted(summary.items(), key=lambda kv: -kv[1]["crossfit_validation_qwk"]):
        versus = entry.get("test_vs_own_adapter", {})
        print(f"{kind:60s} val {entry['crossfit_validation_qwk']:.4f} test {entry['test_qwk']:.4f} "
              f"{versus.get('difference', 0.0):+.4f} [{versus.get('low', 0.0):+.4f}, {versus.get('high', 0.0):+.4f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
