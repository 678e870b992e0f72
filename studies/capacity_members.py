"""`python -m studies.capacity_members`: would a third trunk (MPNet-base) earn its cost as an ensemble member?

On the items whose kept candidates (runs/ensemble_probabilities/, written by `scorer ensemble --force`) include
an MPNet adapter, every kind the build would evaluate with up to three trunks is scored as the build scores
it (training/ensemble.py: cross-fitted validation predictions), and the paired bootstrap states how sure the
comparison is (training/choice_uncertainty.py: each kind's gap to the best with its 95 % interval, and the
cheapest kind within that noise). Test QWK is reported, never used. Writes reports/members_capacity.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from training.choice_uncertainty import decision_table, encode_labels, pooled_decision
from training.ensemble import evaluate_subset, folds_of, member_subsets
from training.ensemble_members import Candidate

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "reports" / "members_capacity.json"
NEW_TRUNK = "mpnet-en"


def candidates_of(item_id: str) -> tuple[list[Candidate], dict[str, list[int]]] | None:
    from studies.weights_study import PROBABILITIES, load, trunk_of

    if not (PROBABILITIES / f"{item_id}.npz").is_file():
        return None
    labels, members, truth = load(item_id)
    if not any(trunk_of(label) == NEW_TRUNK for label in labels):
        return None
    candidates = [Candidate(label, "lexical" if label == "lexical" else "adapter", trunk_of(label),
                            {split: members[split][n] for split in members},
                            tag=label.split("/")[1] if "/" in label else "")
                  for n, label in enumerate(labels)]
    return candidates, {split: [int(v) for v in values] for split, values in truth.items()}


def item_entry(candidates: list[Candidate], truth: dict[str, list[int]], max_trunks: int) -> dict[str, Any]:
    """The item as ensemble.json describes its candidates (what pooled_decision reads)."""
    fold = folds_of(truth["validation"])
    entries = []
    for subset in member_subsets([c.backbone for c in candidates], max_trunks):
        choice = evaluate_subset(tuple(candidates[n] for n in subset), truth, fold)
        entries.append({"signature": "+".join(choice.names), "members": choice.names,
                        "trunk_runs": choice.trunk_runs, "head_runs": choice.head_runs,
                        "crossfit_predicted": encode_labels(choice.crossfit_predicted),
                        "test_qwk": float(choice.test["qwk"])})  # type: ignore[arg-type]
    classes = candidates[0].probabilities["validation"].shape[1]
    return {"labels": list(range(classes)), "validation_truth": encode_labels(truth["validation"]),
            "candidates": entries}


def main(argv: list[str] | None = None) -> int:
    from training.asap import ASAP_ITEMS

    parser = argparse.ArgumentParser(prog="python -m studies.capacity_members", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-trunks", type=int, default=3)
    args = parser.parse_args(argv)
    items: dict[str, dict[str, Any]] = {}
    for item_id in ASAP_ITEMS:
        found = candidates_of(item_id)
        if found is not None:
            items[item_id] = item_entry(*found, args.max_trunks)
    if not items:
        raise SystemExit(f"no kept candidates with a {NEW_TRUNK} adapter: run `scorer ensemble --force` first")
    decision = pooled_decision(list(items.values()))
    assert decision is not None
    for kind in decision["kinds"]:
        decision["kinds"][kind]["mean_test_qwk"] = round(float(np.mean(
            [next(c["test_qwk"] for c in item["candidates"] if c["signature"] == kind) for item in items.values()])),
            4)
    with_new = [kind for kind in decision["kinds"] if NEW_TRUNK in kind]
    best_new = max(with_new, key=lambda kind: decision["kinds"][kind]["mean_crossfit_qwk"]) if with_new else None
    result = {"items": list(items), "max_trunks": args.max_trunks, "decision": decision, "best_with_new": best_new}
    OUT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(decision_table(decision))
    print(f"items {', '.join(items)}; cheapest within noise: {decision['cheapest_within_noise']}; best with "
          f"{NEW_TRUNK}: {best_new}; "
          f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
