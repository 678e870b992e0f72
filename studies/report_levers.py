"""The accuracy report's lever sections: every way of scoring an item against its own MiniLM adapter alone
(reports/levers.json, `python -m studies.lever_study`), the combination rules (reports/weights.json,
`python -m studies.weights_study`) and the domain-adapted backbone (reports/domain.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from studies.pilot_study import mean_change
from studies.report_data import fmt as _fmt
from studies.report_data import kind_note
from studies.report_data import table as _table

Json = dict[str, Any]


def _read(path: Path) -> Json | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _members(kind: str) -> str:
    return " + ".join(kind.split("+"))


def levers_section(reports: Path, shipped_kind: str | None, costs_path: Path) -> list[str]:
    """costs_path: bench/results/ensemble_configs.json (engine answers/s per kind), where it was measured."""
    levers = _read(reports / "levers.json")
    if levers is None:
        return []
    costs = (_read(costs_path) or {}).get("kinds", {})
    rows = []
    for kind, entry in sorted(levers.items(), key=lambda kv: -kv[1]["crossfit_validation_qwk"]):
        versus = entry.get("test_vs_own_adapter")
        rows.append([_members(kind) + (" **(shipped)**" if kind == shipped_kind else ""),
                     _fmt(entry["crossfit_validation_qwk"]), _fmt(entry["test_qwk"]),
                     f"{versus['difference']:+.3f} [{versus['low']:+.3f}, {versus['high']:+.3f}]" if versus else "–",
                     str(entry["trunk_runs"]), str(entry["member_runs"]),
                     _fmt(costs[kind]["engine_answers_per_s"], 0) if kind in costs else "–"])
    tags = sorted({part for kind in levers for part in kind.split("+") if "/" in part})
    return ["## Levers, each measured the same way", "",
            "`python -m studies.lever_study` rebuilds every way of scoring the ten items from the candidates' "
            "probabilities (members averaged with equal weights, thresholds tuned on the whole validation set, "
            "as shipped) and compares it with the item's own MiniLM adapter alone: mean 5-fold cross-fitted "
            "validation QWK (what chooses), mean test QWK, and the test difference with a 95 % paired bootstrap "
            "interval (each item's test answers resampled, 1000 times). "
            + " ".join(f"`{tag}`: {kind_note(tag)}." for tag in tags), "",
            *_table(["members", "cross-fitted val QWK", "test QWK", "test − own adapter [95 %]",
                     "trunk runs / answer", "member runs / answer", "answers/s (engine, 2 cores)"], rows), "",
            "Answers/s: `python -m bench.ensemble_configs` (the committed ensembles re-pointed at each kind, the "
            "same 2,000 ASAP test answers in class sets of 500, one kind after another; – : not measured)."]


def weights_section(reports: Path) -> list[str]:
    weights = _read(reports / "weights.json")
    if not weights:
        return []
    kinds = sorted({kind for item in weights.values() for kind in item})
    rows = []
    for kind in kinds:
        for rule in ("equal", "weights", "stacker"):
            values = [item[kind][rule] for item in weights.values() if kind in item]
            rows.append([_members(kind), rule, _fmt(np.mean([v["crossfit_validation_qwk"] for v in values])),
                         _fmt(np.mean([v["test_qwk"] for v in values]))])
    return ["## Combination rules", "",
            f"`python -m studies.weights_study` ({len(weights)} items): the leading kinds combined by the "
            "equal mean (shipped), by member weights on a grid of quarters chosen with the thresholds on four "
            "folds, and by a logistic-regression stacker on the members' log-probabilities fitted on four folds; "
            "each scored on the fifth (cross-fitted), then refitted on all validation answers for test.", "",
            *_table(["members", "rule", "cross-fitted val QWK", "test QWK"], rows)]


def domain_section(reports: Path) -> list[str]:
    domain = _read(reports / "domain.json")
    if domain is None or not domain.get("pilot"):
        return []
    pilot = domain["pilot"]
    change = mean_change(pilot, "validation")
    loss = domain["update"].get("held_out_loss")
    lines = ["## Domain-adapted backbone", "",
             f"MLM training of MiniLM on the ASAP training answers as a low-rank update of every layer "
             f"([domain.md](domain.md)); items retrained on it ({', '.join(row['item'] for row in pilot)}): mean "
             f"validation-QWK change {change:+.3f}, so it is not shipped."]
    if loss:
        lines[-1] += f" Held-out masked-token loss {loss['before']:.3f} → {loss['after']:.3f}."
    full = domain.get("full_update")
    if full:
        lines += ["", f"Updating every weight instead (`--full`, lr 5e-5): held-out loss "
                      f"{full['held_out_loss']['before']:.3f} → {full['held_out_loss']['after']:.3f} in "
                      f"{full['train_seconds'] / 60:.1f} min: the committed low-rank form is not worse."
                  if loss and loss["after"] <= full["held_out_loss"]["after"] else
                  f"Updating every weight instead (`--full`): held-out loss {full['held_out_loss']['after']:.3f}."]
    return lines
