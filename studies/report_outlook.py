"""The accuracy report's summary of issue 31's aim (>= 0.80 mean test QWK through the service): where the
served tiers stand, every lever and what it gave, and what stands in the way — each measured figure read from
the committed results it summarises, so that the summary moves when they do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studies.report_data import ItemResult
from studies.report_data import fmt as _fmt

Json = dict[str, Any]
AIM = 0.80


def _read(path: Path) -> Json | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _kinds_of_two_or_more(choice: Json) -> list[float]:
    return [row["mean_crossfit_qwk"] for kind, row in choice["kinds"].items() if "+" in kind]


def _alone(items: list[ItemResult], kind: str, split: str) -> float | None:
    values = [value for item in items if (value := item.other_qwk(kind, split)) is not None]
    return _mean(values) if len(values) == len(items) else None


def outlook_section(items: list[ItemResult], reports: Path, results: Path) -> list[str]:
    tiers = _read(results / "tiers.json")
    shipped = _read(reports / "ensemble_choice.json")
    with_mpnet = _read(reports / "ensemble_choice_mpnet.json")
    decision = (shipped or {}).get("max_trunks=2")
    if not tiers or "accurate" not in tiers["tiers"] or not decision or not items:
        return []  # nothing measured to summarise (as every section without its results)
    tier = tiers["tiers"]
    accurate = tier["accurate"]["mean_qwk"]
    humans = [item.human for item in items if item.human is not None]
    full = [item.full["test"]["qwk"] for item in items if item.full]
    validation = [int(item.metrics["sizes"]["validation"]) for item in items if "sizes" in item.metrics]
    served = decision["kinds"][decision["served"]]
    widths = [row["gap_interval"][1] - row["gap_interval"][0] for row in decision["kinds"].values()
              if row["gap_to_best"] > 0] or [0.0]
    pooled = _kinds_of_two_or_more(decision) or [served["mean_crossfit_qwk"]]
    lines = ["## Where the aim of 0.80 stands", "",
             "Through the service (`python -m bench.tiers`, every ASAP test answer through `POST /batch`): "
             + ", ".join(f"{name} {_fmt(entry['mean_qwk'])} at {entry['answers_per_second']:.0f} answers/s"
                         for name, entry in tier.items())
             + f" (HTTP, 2 cores). The aim is {AIM:.2f}; "
             + (f"the accurate tier is {AIM - accurate:.3f} short of it. " if accurate < AIM
                else "the accurate tier reaches it. ")
             + f"Two human raters agree at {_fmt(_mean(humans)) if humans else '–'}; full fine-tuning of MiniLM "
             f"per item reaches {_fmt(_mean(full)) if full else '–'}.", "",
             "Every lever the issue named is measured, each in its own section below: domain-adaptive MLM "
             "(alone and as members), adapter rank and split point, seeds, fitted weights and a stacker, both "
             "raters' scores, the lexical member, E5's split point and learning rate, decoding rules, the "
             "cross-fitted choice with a bootstrap of its uncertainty, and MPNet-base (110 M parameters) on "
             "all ten items alone and as a member."]
    mpnet_val, mpnet_test = _alone(items, "mpnet-en/r2", "validation"), _alone(items, "mpnet-en/r2", "test")
    minilm_val, minilm_test = _alone(items, "minilm-en/r2", "validation"), _alone(items, "minilm-en/r2", "test")
    lines += ["", "What stands in the way, as measured:", "",
              f"- **The members agree with each other.** Every kind of two or more members the build compared "
              f"scores between {_fmt(min(pooled))} and {_fmt(max(pooled))} mean cross-fitted validation QWK "
              f"(within two trunks); the served kind {_fmt(served['mean_crossfit_qwk'])}. Combining has given "
              "what it can: the members' errors are correlated.",
              f"- **Validation cannot separate what is left.** On {min(validation or [0])}–{max(validation or [0])} "
              f"validation answers per item, the "
              f"95 % bootstrap intervals of a kind's gap to the best are {min(widths):.3f}–{max(widths):.3f} wide: "
              "gains below about 0.02 cannot be told from noise, so a choice among the leading kinds is not a "
              "gain that would hold on test."]
    if mpnet_val is not None and mpnet_test is not None and minilm_val is not None and minilm_test is not None:
        speed = (_read(reports / "mpnet.json") or {}).get("answers_per_second", {})
        cost = (f", at {speed['minilm-en'] / speed['mpnet-en']:.1f}× MiniLM's cost per answer"
                if {"mpnet-en", "minilm-en"} <= set(speed) else "")
        line = (f"- **A larger frozen trunk did not add signal.** MPNet-base on both raters, all ten items: "
                f"validation / test {_fmt(mpnet_val)} / {_fmt(mpnet_test)} against MiniLM on both raters' "
                f"{_fmt(minilm_val)} / {_fmt(minilm_test)}{cost}")
        if with_mpnet:
            best = with_mpnet["max_trunks=2"]
            shipped_row = best["kinds"][best["served"]]
            lead = _fmt(best["kinds"][best["best"]]["mean_crossfit_qwk"])
            line += (f"; as a member, the best kind ({best['best']}, {lead}) leads the served kind by "
                     f"{shipped_row['gap_to_best']:+.4f} (95 % "
                     f"{shipped_row['gap_interval'][0]:+.4f} … {shipped_row['gap_interval'][1]:+.4f}), within the "
                     "noise ([mpnet_all_items.md](mpnet_all_items.md))")
        lines.append(line + ".")
    lines += ["- **Not measured here:** full fine-tuning of BERT-base-class or larger models per item, what the "
              "published ≈ 0.80 ensembles do — hours per item on 2 CPU cores; it needs a lent GPU."]
    return lines
