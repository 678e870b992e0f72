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
