"""`python -m studies.small_data_check`: the small-item regression check, English and German.

add-item's decoding and choice on items of a few hundred answers, against what it did before and against a
TF-IDF reference, on both languages (a recipe change that loses on either does not ship):
- English: ASAP items 1 and 5, samples of 200 non-test answers (studies/small_data_study.sample), scored
  on the item's whole standard test set; backbone minilm-en.
- German: the two SAF micro-job questions in ../shared/data/saf-de-dev (score = round(score x 4), 0-4),
  split stratified with the seed: 20 % test, then 10 % of the rest validation; backbone e5-multilingual.
Per sample one small-recipe adapter is trained; on its probabilities, with the lexical member refitted on
training + validation as add-item does, and the adapter alone or with the lexical member:
- `before`: the expected score cut at fixed k + 0.5, adapter + lexical always served (the recipe until now);
- `now`: the same cuts, adapter alone or with the lexical member, whichever validation prefers (ties: alone);
- `argmax`: argmax decoding with that choice (made on argmax validation QWK);
- `cuts alone` / `argmax alone`: the adapter alone, each decoding;
- `tfidf`: word 1-2 + char 2-5 gram TF-IDF logistic regression fitted on training + validation answers.
Resumable per sample (reports/small_data_check.json); `--report` writes reports/small_data_check.md.
"""

from __future__ import annotations

import argparse
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from studies.small_data_study import sample, tfidf_qwk
from training.asap import load_asap_item
from training.backbones import resolve_backbone
from training.data import ItemData, ScoreRange, stratified_split
from training.ensemble import evaluate_subset, folds_of
from training.ensemble_members import SCORED_SPLITS, Candidate, lexical_candidate
from training.recipes import recipe_config
from training.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[1]
GERMAN = REPO.parent / "shared" / "data" / "saf-de-dev" / "german"
RESULTS = REPO / "reports" / "small_data_check.json"
SAMPLES = {"asap-01": "en", "asap-05": "en", "saf-de-2": "de", "saf-de-5": "de"}
BACKBONE = {"en": "minilm-en", "de": "e5-multilingual"}
VARIANTS = {"before": "before", "now": "now", "argmax": "argmax", "cuts_alone": "cuts alone",
            "argmax_alone": "argmax alone", "tfidf": "TF-IDF"}


def german_item(question: str, seed: int) -> ItemData:
    root = ET.parse(GERMAN / f"{question}.xml").getroot()
    rows = [(str(answer.findtext("response") or "").strip(), round(float(answer.findtext("score") or 0) * 4))
            for answer in root.iter("studentAnswer")]
    rows = [(text, score) for text, score in rows if text]
    rest, test = stratified_split(rows, 0.2, seed)
    train, validation = stratified_split(rest, 0.1, seed)
    return ItemData(f"saf-de-{question}", ScoreRange(0, 4), train=train, validation=validation, test=test)


def item_of(name: str, seed: int) -> ItemData:
    return german_item(name.removeprefix("saf-de-"), seed) if name.startswith("saf-de-") else \
        sample(load_asap_item(name), 200, seed)


def variants(item: ItemData, backbone_name: str, seed: int) -> dict[str, Any]:
    from training.pipeline import encode_item, run_training
    from training.trainer import FeatureSource, predict_proba

    backbone = resolve_backbone(backbone_name)
    config = recipe_config(item, TrainConfig(split_layer=backbone.spec.split_layer,
                                                    learning_rate=backbone.spec.learning_rate, seed=seed), "small")
    result = run_training(item, backbone, config, f"{item.item_id}|{seed}")
    encoded = encode_item(item, backbone)
    adapter = Candidate("adapter", "adapter", backbone_name, {
        split: predict_proba(result.model, FeatureSource(result.model, encoded[split][0], cache_trunk=False,
                                                         batch_size=32), 32) for split in SCORED_SPLITS})
    lexical = lexical_candidate(item, seed, refit=True)
    low = item.score_range.low
    truth = {split: [score - low for _, score in getattr(item, split)] for split in SCORED_SPLITS}
    fold = folds_of(truth["validation"], seed)
    alone, both = (evaluate_subset(members, truth, fold) for members in ((adapter,), (adapter, lexical)))
    now = max((alone, both), key=lambda choice: (round(choice.validation_qwk, 6), -len(choice.members)))
    argmax = {name: {split: _qwk(members, truth, split, None) for split in SCORED_SPLITS}
              for name, members in (("alone", (adapter,)), ("+lexical", (adapter, lexical)))}
    argmax_served = max(argmax, key=lambda name: (round(argmax[name]["validation"], 6), name == "alone"))
    return {"before": _qwk((adapter, lexical), truth, "test", CUTS), "now": float(now.test["qwk"]),  # type: ignore[arg-type]
            "now_served": "+lexical" if now is both else "alone", "tfidf": tfidf_qwk(item),
            "argmax": argmax[argmax_served]["test"], "argmax_served": argmax_served,
            "cuts_alone": _qwk((adapter,), truth, "test", CUTS), "argmax_alone": argmax["alone"]["test"],
            "steps": result.steps, "kept_steps": result.kept_steps, "batch_size": config.batch_size,
            "step_precision": config.step_precision}


CUTS = "fixed"  # the expected score cut at k + 0.5


def _qwk(members: tuple[Candidate, ...], truth: dict[str, list[int]], split: str, rule: str | None) -> float:
    """QWK of the members' mean probabilities on a split, decoded by fixed cuts or (None) argmax."""
    from core.decoding import decode
    from core.ensemble import combine
    from training.metrics import quadratic_weighted_kappa

    mixed = combine([member.probabilities[split] for member in members], [1.0] * len(members))
    cuts = [k + 0.5 for k in range(mixed.shape[1] - 1)] if rule == CUTS else None
    return quadratic_weighted_kappa(truth[split], list(decode(mixed, cuts)), list(range(mixed.shape[1])))


def run(seeds: list[int], path: Path = RESULTS) -> dict[str, Any]:
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    plan = [(name, seed) for name in SAMPLES for seed in seeds if f"{name}|{seed}" not in results]
    for name, seed in tqdm(plan, desc="small-data check", unit="sample"):
        started = time.perf_counter()
        item = item_of(name, seed)
        outcome = variants(item, BACKBONE[SAMPLES[name]], seed)
        results[f"{name}|{seed}"] = {**outcome, "language": SAMPLES[name], "train": len(item.train),
                                     "validation": len(item.validation), "test": len(item.test),
                                     "seconds": round(time.perf_counter() - started, 1)}
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def report(results: dict[str, Any], path: Path = RESULTS, against: Path | None = None) -> Path:
    lines = ["# Small-item check: add-item's decoding and choice, English and German", "",
             "Generated by `python -m studies.small_data_check` (module docstring: what each column is).", "",
             "| sample | language | train / val / test | before | now (served) | argmax (served) | TF-IDF "
             "| steps (kept) |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for key, row in sorted(results.items()):
        sample = key.replace("|", " seed ")  # a bare | would split the table cell
        lines.append(f"| {sample} | {row['language']} | {row['train']} / {row['validation']} / {row['test']} | "
                     f"{row['before']:.3f} | {row['now']:.3f} ({row['now_served']}) | "
                     f"{row['argmax']:.3f} ({row['argmax_served']}) | "
                     f"{row['tfidf']:.3f} | "
                     f"{row['steps']} ({row['kept_steps']}) |")
    lines += ["", "Mean test QWK (the module docstring says what each column is):", "", *language_means(results)]
    if against is not None and against.is_file():
        lines += recipe_change(results, json.loads(against.read_text()), against.name)
    written = path.with_suffix(".md")
    written.write_text("\n".join(lines) + "\n")
    return written


def language_means(results: dict[str, Any]) -> list[str]:
    """Mean test QWK per language and variant, with the served one's lead over TF-IDF and over `before`."""
    lines = ["| language | samples | " + " | ".join(VARIANTS.values()) + " | now − TF-IDF | now − before |",
             "|---|---:|" + "---:|" * (len(VARIANTS) + 2)]
    for language in ("en", "de"):
        rows = [row for row in results.values() if row["language"] == language]
        if rows:
            mean = {name: float(np.mean([row[name] for row in rows])) for name in VARIANTS}
            lines.append(f"| {language} | {len(rows)} | " + " | ".join(f"{mean[name]:.3f}" for name in VARIANTS)
                         + f" | {mean['now'] - mean['tfidf']:+.3f} | {mean['now'] - mean['before']:+.3f} |")
    return lines


def recipe_change(now: dict[str, Any], before: dict[str, Any], name: str) -> list[str]:
    """The served QWK (`now`) and time per sample against an earlier recipe's run on the same samples."""
    lines = ["", f"Against the earlier recipe's run on the same samples ({name}), served QWK (`now`) and seconds "
             "per sample (training + evaluation, 2 cores):", "",
             "| language | samples | earlier | this | change | TF-IDF | this − TF-IDF | seconds earlier "
             "| seconds this |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for language in ("en", "de"):
        keys = [key for key, row in now.items() if row["language"] == language and key in before]
        if keys:
            mean = {name: float(np.mean([source[key][field] for key in keys]))
                    for name, source, field in (("before", before, "now"), ("now", now, "now"),
                                                ("tfidf", now, "tfidf"), ("s_before", before, "seconds"),
                                                ("s_now", now, "seconds"))}
            lines.append(f"| {language} | {len(keys)} | {mean['before']:.3f} | {mean['now']:.3f} | "
                         f"{mean['now'] - mean['before']:+.3f} | {mean['tfidf']:.3f} | "
                         f"{mean['now'] - mean['tfidf']:+.3f} | {mean['s_before']:.0f} | {mean['s_now']:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.small_data_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15, 16])
    parser.add_argument("--report", action="store_true", help="only write the report from what is there")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="results file (another one keeps a recipe change's run beside the current one's)")
    parser.add_argument("--against", type=Path, default=REPO / "reports" / "small_data_check_fp32.json",
                        help="an earlier recipe's results on the same samples, compared in the report")
    args = parser.parse_args(argv)
    path = args.results
    results = json.loads(path.read_text()) if args.report and path.is_file() else run(args.seeds, path)
    print(f"wrote {report(results, path, args.against)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
