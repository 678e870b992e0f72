"""The accuracy report's cost-tier section: bench/results/tiers.json (`python -m bench.tiers`), each tier's test
QWK through the service and its answers/s on this machine, per item and mean."""

from __future__ import annotations

import json
from pathlib import Path

from studies.report_data import fmt as _fmt
from studies.report_data import table as _table


def tiers_section(results: Path) -> list[str]:
    path = results / "tiers.json"
    if not path.is_file():
        return []
    tiers = json.loads(path.read_text())["tiers"]
    names = list(tiers)
    items = list(tiers[names[0]]["items"])
    rows = [[item_id, *[_fmt(tiers[name]["items"][item_id]["qwk"]) for name in names]] for item_id in items]
    rows.append(["**mean**", *[f"**{_fmt(tiers[name]['mean_qwk'])}**" for name in names]])
    rows.append(["answers/s (HTTP, 2 cores)", *[f"{tiers[name]['answers_per_second']:.1f}" for name in names]])
    rows.append(["trunk runs per answer", *[f"{tiers[name]['trunk_runs_per_answer']:g}" for name in names]])
    members = {name: " + ".join(m.split("@")[0].replace(items[0], "item") for m in tiers[name]["items"][items[0]]
                                ["members"]) for name in names}
    return ["## Cost tiers (SCORER_TIER)", "",
            "`python -m bench.tiers`: for each tier a fresh service (duplicate cache off) scores every ASAP test "
            "answer through `POST /batch`; QWK by our own client. What each tier serves (export/tiers.py, chosen on "
            "validation): " + "; ".join(f"{name}: {members[name]}" for name in names) + ".", "",
            *_table(["item", *names], rows)]


def evidence_section(results: Path) -> list[str]:
    """bench/results/evidence.json (`python -m bench.evidence`): how far the evidence behind `explain` goes."""
    path = results / "evidence.json"
    if not path.is_file():
        return []
    evidence = json.loads(path.read_text())
    keys = ("neighbours_agree_with_served", "neighbours_agree_with_human", "served_agrees_with_human",
            "qwk_served", "qwk_neighbours", "flagged_share", "accuracy_flagged", "accuracy_unflagged")
    rows = [[item_id, *[_fmt(figures[key]) for key in keys]] for item_id, figures in evidence["items"].items()]
    rows.append(["**mean**", *[f"**{_fmt(evidence['mean'][key])}**" for key in keys]])
    speed = evidence["answers_per_second"]
    return ["## Evidence (explain)", "",
            "`python -m bench.evidence`: every ASAP test answer (in no index) through `POST /batch` with `explain`; "
            "the neighbours' majority score against the served and the human score, the neighbours alone as a "
            "scorer, and how right the served score is on the answers flagged `neighbours_disagree` and on the "
            f"rest. explain costs {evidence['explain_cost']:.1%} ({speed['explain']} against {speed['plain']} "
            "answers/s on the same requests).", "",
            *_table(["item", "nbrs = served", "nbrs = human", "served = human", "QWK served", "QWK nbrs",
                     "flagged", "right when flagged", "right otherwise"], rows)]


def choice_section(path: Path) -> list[str]:
    """reports/ensemble_choice.json (`scorer ensemble`): the pooled choice with its stated uncertainty."""
    if not path.is_file():
        return []
    lines = ["## Choosing with stated uncertainty", "",
             "`scorer ensemble` (training/choice_uncertainty.py): every kind's cross-fitted validation "
             "predictions, resampled with a paired bootstrap over each item's validation answers (every kind on the "
             "same draw); each kind's gap to the best mean with its 95 % interval, and the cheapest kind (trunk "
             "runs, then head runs) whose interval reaches zero. Test answers play no part."]
    for budget, decision in sorted(json.loads(path.read_text()).items()):
        kinds = sorted(decision["kinds"].items(), key=lambda kv: (kv[1]["trunk_runs"], kv[1]["head_runs"]))
        marks = {"served": " **(served)**", "best": " (best)", "cheapest_within_noise": " (cheapest within noise)"}
        rows = [[kind + "".join(mark for key, mark in marks.items() if decision.get(key) == kind),
                 str(row["trunk_runs"]), str(row["head_runs"]),
                 _fmt(row["mean_crossfit_qwk"]), f"{row['gap_to_best']:+.4f}",
                 f"{row['gap_interval'][0]:+.4f} … {row['gap_interval'][1]:+.4f}"] for kind, row in kinds]
        lines += ["", f"{budget} ({decision['items']} items, {decision['replicates']} replicates):", "",
                  *_table(["kind", "trunks", "heads", "mean cross-fitted QWK", "gap to best", "95 % interval"],
                          rows)]
    return lines
