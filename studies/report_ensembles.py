"""The accuracy report's ensemble section: each kind of ensemble per item (the validation figures that chose
it, its test QWK), the shipped ensemble against the single MiniLM adapter through the running service with
paired bootstrap confidence intervals, against full fine-tuning and humans, and what each costs to serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import ttest_rel

from studies.report_data import ItemResult
from studies.report_data import fmt as _fmt
from studies.report_data import table as _table
from training.metrics import quadratic_weighted_kappa

Json = dict[str, Any]
BOOTSTRAP_RESAMPLES = 1000
HTTP_ENSEMBLE = "qwk_over_http.json"  # bench/results/: the service as shipped
HTTP_FAST = "qwk_over_http_fast.json"  # the same with SCORER_ENSEMBLES=false


def read_ensembles(adapters: Path) -> dict[str, Json]:
    return {path.parent.name: json.loads(path.read_text())
            for path in sorted((adapters / "ensembles").glob("*/ensemble.json"))}


def paired_bootstrap(first: Json, second: Json, seed: int = 13) -> tuple[float, float, float, dict[str, list[float]]]:
    """Mean over items of QWK(second) - QWK(first) on the same test answers, with a 95 % interval from
    resampling each item's answers (the same resample for both scorers); also each item's interval."""
    rng = np.random.default_rng(seed)
    items = sorted(set(first) & set(second))
    differences = np.zeros((BOOTSTRAP_RESAMPLES, len(items)))
    observed = []
    for column, item_id in enumerate(items):
        truth = np.asarray(first[item_id]["truth"])
        one, two = np.asarray(first[item_id]["predicted"]), np.asarray(second[item_id]["predicted"])
        labels = sorted(set(truth) | set(one) | set(two))
        observed.append(quadratic_weighted_kappa(list(truth), list(two), labels)
                        - quadratic_weighted_kappa(list(truth), list(one), labels))
        for row in range(BOOTSTRAP_RESAMPLES):
            pick = rng.integers(0, len(truth), len(truth))
            differences[row, column] = (quadratic_weighted_kappa(list(truth[pick]), list(two[pick]), labels)
                                        - quadratic_weighted_kappa(list(truth[pick]), list(one[pick]), labels))
    means = differences.mean(axis=1)
    per_item = {item_id: [observed[column], *np.percentile(differences[:, column], [2.5, 97.5]).tolist()]
                for column, item_id in enumerate(items)}
    low, high = np.percentile(means, [2.5, 97.5])
    return float(np.mean(observed)), float(low), float(high), per_item


def ensemble_section(items: list[ItemResult], adapters: Path, http_results: Path) -> list[str]:
    ensembles = read_ensembles(adapters)
    if not ensembles:
        return []
    kinds = sorted({c["signature"] for e in ensembles.values() for c in e["candidates"]}, key=len)
    lines = ["## Ensembles (shipped default)", "",
             "`python -m training ensemble --items all` evaluates, per item, the MiniLM adapter alone and with "
             "every combination of the item's other adapters (E5; MiniLM trained on both raters, `r2`; MiniLM "
             "with another seed, `s14`) and the lexical member (word 1–2 + char 2–5 gram TF-IDF, "
             "logistic regression, fitted on the training answers, shipped as ONNX), within two trunks. "
             "Members' probabilities are averaged with equal weights; thresholds are tuned on validation. "
             "Kinds of ensemble are "
             "compared by 5-fold cross-fitted validation QWK (thresholds tuned on four folds, scored on the "
             "fifth), pooled over the ten items; the best kind is shipped for every item. Test answers "
             "choose nothing.", "",
             "Mean over items (test QWK is reported, never used):", ""]
    rows = []
    for kind in kinds:
        picked = [c for e in ensembles.values() for c in e["candidates"] if c["signature"] == kind]
        rows.append([kind.replace("+", " + "), str(len(picked)),
                     _fmt(np.mean([c["crossfit_validation_qwk"] for c in picked])),
                     _fmt(np.mean([c["validation_qwk"] for c in picked])),
                     _fmt(np.mean([c["test"]["qwk"] for c in picked])), str(picked[0]["trunk_runs"]),
                     str(picked[0]["head_runs"])])
    lines += _table(["members", "items", "cross-fitted val QWK (chose)", "val QWK (tuned on it)", "test QWK",
                     "trunk runs / answer", "member runs / answer"], rows)
    shipped = {item_id: e["chosen"] for item_id, e in ensembles.items()}
    fast = _http(http_results / HTTP_FAST)
    served = _http(http_results / HTTP_ENSEMBLE)
    header = ["item", "MiniLM adapter", "MiniLM + E5", "MiniLM + lexical", "shipped ensemble",
              "full fine-tuning", "human"]
    per_item = []
    for item in items:
        ensemble = ensembles.get(item.item_id)
        if ensemble is None:
            continue
        by_kind = {c["signature"]: c["test"]["qwk"] for c in ensemble["candidates"]}
        per_item.append([item.item_id, _fmt(item.metrics["test"]["qwk"]),
                         _fmt(by_kind.get("minilm-en+e5-multilingual")), _fmt(by_kind.get("minilm-en+lexical")),
                         _fmt(shipped[item.item_id]["test"]["qwk"]),
                         _fmt(item.full["test"]["qwk"] if item.full else None), _fmt(item.human)])
    lines += ["", "Per item, test QWK:", "", *_table(header, per_item)]
    lines += _service_lines(fast, served, items, shipped)
    return lines


def _http(path: Path) -> Json | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _service_lines(fast: Json | None, served: Json | None, items: list[ItemResult],
                   shipped: dict[str, Json]) -> list[str]:
    if fast is None or served is None:
        return ["", f"(Through the service: run bench.qwk_over_http in both modes into {HTTP_ENSEMBLE} and "
                    f"{HTTP_FAST}.)"]
    mean, low, high, per_item = paired_bootstrap(fast["items"], served["items"])
    single = [fast["items"][i]["qwk_http"] for i in sorted(served["items"])]
    combined = [served["items"][i]["qwk_http"] for i in sorted(served["items"])]
    lines = ["", "Through the running service (`python -m bench.qwk_over_http`, all 5,224 test answers via "
                 "`POST /batch`, 500 mixed-item rows per request):", "",
             f"- single MiniLM adapter (`SCORER_ENSEMBLES=false`): mean QWK **{np.mean(single):.3f}**, "
             f"{fast['answers_per_second']:.0f} answers/s",
             f"- shipped ensemble: mean QWK **{np.mean(combined):.3f}**, {served['answers_per_second']:.0f} answers/s "
             f"({served['answers_per_second'] / fast['answers_per_second']:.2f}× the single head's throughput)",
             f"- difference {mean:+.3f}, 95 % paired bootstrap interval [{low:+.3f}, {high:+.3f}] "
             f"({BOOTSTRAP_RESAMPLES} resamples of each item's test answers)"]
    full = {item.item_id: item.full["test"]["qwk"] for item in items if item.full}
    paired = [(served["items"][i]["qwk_http"], full[i]) for i in sorted(served["items"]) if i in full]
    if len(paired) > 1:
        result = ttest_rel([p[0] for p in paired], [p[1] for p in paired])
        lines.append(f"- ensemble − full fine-tuning of MiniLM: {np.mean([a - b for a, b in paired]):+.3f} "
                     f"(paired t-test over {len(paired)} items, t = {float(result.statistic):.2f}, "
                     f"p = {float(result.pvalue):.3g})")
    rows = [[item_id, f"{values[0]:+.3f}", f"[{values[1]:+.3f}, {values[2]:+.3f}]"]
            for item_id, values in per_item.items()]
    return [*lines, "", *_table(["item", "ensemble − single", "95 % interval"], rows)]
