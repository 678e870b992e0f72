"""`python -m studies.member_study`: would the ensemble build choose a pilot's adapters as members?

The build chooses among the committed candidates (runs/ensemble_probabilities/, kept by `python -m training
ensemble`). Here a pilot folder's adapters (e.g. the items retrained on the domain-adapted backbone) join
those candidates under one label, and every kind the build evaluates (the own adapter plus any others within
the trunk budget, training.ensemble.member_subsets) is scored exactly as the build scores it. Reported: the
pooled ranking by mean 5-fold cross-fitted validation QWK (what the build's choice compares), where the shipped
kind and the best kind with the new member stand, their test QWK and the test difference from the shipped
kind with a 95 % paired bootstrap interval. Test answers choose nothing. Writes reports/members_<label>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from studies.lever_study import score_way
from studies.pilot_study import pilot_records
from studies.report_ensembles import paired_bootstrap
from studies.weights_study import kinds, load
from training.asap import ASAP_ITEMS, load_asap_item
from training.ensemble_members import adapter_candidate

REPO = Path(__file__).resolve().parents[1]
REPORTS = REPO / "reports"
Scored = dict[str, dict[str, Any]]


def with_pilot_member(item_id: str, pilot: Path, label: str) -> tuple[list[str], Any, Any]:
    """The build's candidates for the item plus the pilot's adapter of it, under `label`."""
    labels, members, truth = load(item_id)
    record = next((r for r in pilot_records(pilot) if r.config.get("source_item") == item_id), None)
    if record is None:
        raise SystemExit(f"{pilot} has no adapter for {item_id}")
    probabilities = adapter_candidate(record, load_asap_item(item_id)).probabilities
    if any(len(probabilities[split]) != len(truth[split]) for split in truth):
        raise SystemExit(f"{item_id}: the pilot adapter scored other answers than the ensemble build kept")
    return [*labels, label], {split: [*members[split], probabilities[split]] for split in members}, truth


def score_item(item_id: str, pilot: Path, label: str, max_trunks: int) -> Scored:
    """Every kind the build evaluates (the own adapter alone or with others), and the new member alone."""
    labels, members, truth = with_pilot_member(item_id, pilot, label)
    ways = [(0,), *kinds(labels, max_trunks), (len(labels) - 1,)]
    return {"+".join(labels[n] for n in way): score_way(labels, members, truth, way) for way in ways}


def pooled(per_item: dict[str, Scored], kind: str) -> dict[str, Any]:
    return {"crossfit_validation_qwk": float(np.mean([s[kind]["crossfit_validation_qwk"] for s in per_item.values()])),
            "test_qwk": float(np.mean([s[kind]["test_qwk"] for s in per_item.values()])),
            "per_item_test_qwk": {item_id: round(s[kind]["test_qwk"], 4) for item_id, s in per_item.items()},
            "trunk_runs": next(iter(per_item.values()))[kind]["trunk_runs"]}


def study(items: list[str], pilot: Path, label: str, shipped: str, max_trunks: int) -> dict[str, Any]:
    per_item = {item_id: score_item(item_id, pilot, label, max_trunks)
                for item_id in tqdm(items, desc=f"members + {label}", unit="item")}
    build_kinds = [kind for kind in next(iter(per_item.values())) if kind != label]  # alone: not a build kind
    validation = {kind: pooled(per_item, kind)["crossfit_validation_qwk"] for kind in build_kinds}
    ranking = sorted(validation, key=lambda kind: -validation[kind])
    with_new = [kind for kind in ranking if label in kind.split("+") and "+" in kind]
    summary = {kind: pooled(per_item, kind) for kind in [*ranking[:8], shipped, *with_new[:3], label]}
    for kind, entry in summary.items():
        if kind != shipped:
            mean, low, high, _ = paired_bootstrap({i: s[shipped] for i, s in per_item.items()},
                                                  {i: s[kind] for i, s in per_item.items()})
            entry["test_vs_shipped"] = {"difference": mean, "low": low, "high": high}
    return {"label": label, "pilot": str(pilot.relative_to(REPO) if pilot.is_relative_to(REPO) else pilot),
            "items": items, "max_trunks": max_trunks, "shipped_kind": shipped, "build_would_choose": ranking[0],
            "shipped_rank": ranking.index(shipped) + 1, "kinds_compared": len(ranking),
            "best_with_new_member": with_new[0] if with_new else None, "kinds": summary}


def main(argv: list[str] | None = None) -> int:
    from studies.report import shipped_kind

    parser = argparse.ArgumentParser(prog="python -m studies.member_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pilot", required=True, type=Path, help="adapters folder, e.g. runs/domain-pilot")
    parser.add_argument("--label", required=True, help="the members' label, e.g. minilm-en-asap")
    parser.add_argument("--items", nargs="+", default=ASAP_ITEMS)
    parser.add_argument("--max-trunks", type=int, default=2)
    args = parser.parse_args(argv)
    shipped = shipped_kind(REPO / "adapters")
    if shipped is None:
        raise SystemExit("no single shipped ensemble kind in adapters/ensembles")
    result = study(args.items, args.pilot.resolve(), args.label, shipped, args.max_trunks)
    out = REPORTS / f"members_{args.label}.json"
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for kind, entry in result["kinds"].items():
        versus = entry.get("test_vs_shipped", {})
        print(f"{kind:70s} val {entry['crossfit_validation_qwk']:.4f} test {entry['test_qwk']:.4f} "
              f"{versus.get('difference', 0.0):+.4f} [{versus.get('low', 0.0):+.4f}, {versus.get('high', 0.0):+.4f}]")
    print(f"the build would choose {result['build_would_choose']}; shipped ranks {result['shipped_rank']} of "
          f"{result['kinds_compared']}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
