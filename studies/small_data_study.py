"""`python -m studies.small_data_study`: do small items train without collapsing, and beat a lexical model?

For ASAP items, samples of N answers (stratified, from the non-test answers) are split as add-item splits a
file (10 % validation), trained with the standard recipe and the small-item recipe (training/recipes.py),
and compared with a TF-IDF (word 1-2 + char 2-5 grams) logistic regression fitted on the same N answers.
Every model is scored on the item's whole standard test set (held out from every choice). Resumable per run
(reports/small_data.json); `--report` writes reports/small_data.md and the plot from what is there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from tqdm import tqdm

from training.asap import load_asap_item
from training.backbones import resolve_backbone
from training.data import ItemData, stratified_split
from training.metrics import quadratic_weighted_kappa
from training.pipeline import run_training
from training.recipes import recipe_config
from training.trainer import TrainConfig

REPORTS = Path(__file__).resolve().parents[1] / "reports"
RESULTS = REPORTS / "small_data.json"
RECIPES = ("standard", "small")
WITH_LEXICAL = "small+lexical"  # the small recipe's adapter with the lexical member
WITH_REFIT = "small+lexical+refit"  # the same, the lexical member refitted on train + validation (add-item's default)


def sample(item: ItemData, size: int, seed: int) -> ItemData:
    pool = item.train + item.validation
    _, chosen = stratified_split(pool, size / len(pool), seed)
    train, validation = stratified_split(chosen, 0.1, seed)
    return ItemData(item.item_id, item.score_range, train=train, validation=validation, test=item.test)


def tfidf_qwk(item: ItemData) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    rows = item.train + item.validation
    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))
    model = make_pipeline(features, LogisticRegression(max_iter=2000, C=10.0))
    model.fit([text for text, _ in rows], [score for _, score in rows])
    predicted = model.predict([text for text, _ in item.test])
    return quadratic_weighted_kappa([score for _, score in item.test], list(predicted), item.score_range.labels)


def with_lexical(item: ItemData, backbone: Any, seed: int, desc: str) -> dict[str, dict[str, Any]]:
    """The small recipe's adapter and the lexical member, combined and decoded exactly as add-item's ensemble
    step does (training/ensemble.py): WITH_LEXICAL with the member fitted on the sample's training answers,
    WITH_REFIT with it refitted on training + validation after the choice (same adapter, same choice)."""
    from training.ensemble import evaluate_subset, folds_of
    from training.ensemble_members import SCORED_SPLITS, Candidate, lexical_candidate
    from training.pipeline import encode_item
    from training.trainer import FeatureSource, predict_proba

    config = recipe_config(item, TrainConfig(split_layer=3, seed=seed), "small")
    result = run_training(item, backbone, config, desc)
    encoded = encode_item(item, backbone)
    adapter = Candidate("adapter", "adapter", backbone.spec.name, {
        split: predict_proba(result.model, FeatureSource(result.model, encoded[split][0], cache_trunk=False,
                                                         batch_size=32), 32) for split in SCORED_SPLITS})
    low = item.score_range.low
    truth = {split: [score - low for _, score in getattr(item, split)] for split in SCORED_SPLITS}
    outcomes: dict[str, dict[str, Any]] = {}
    for name, refit in ((WITH_LEXICAL, False), (WITH_REFIT, True)):
        members = (adapter, lexical_candidate(item, seed, refit=refit))
        choice = evaluate_subset(members, truth, folds_of(truth["validation"], seed))
        confusion = np.asarray(choice.test["confusion"])
        outcomes[name] = {"test_qwk": float(choice.test["qwk"]),  # type: ignore[arg-type]
                          "distinct_predictions": int((confusion.sum(axis=0) > 0).sum())}
    return outcomes


def run(items: list[str], sizes: list[int], seeds: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    backbone = resolve_backbone("minilm-en")
    plan = [(item_id, size, seed) for item_id in items for size in sizes for seed in seeds]
    for item_id, size, seed in tqdm(plan, desc="small-data study", unit="sample"):
        full = load_asap_item(item_id)
        small = sample(full, size, seed)
        for recipe in (*RECIPES, "tfidf", WITH_LEXICAL):
            key = f"{item_id}|{size}|{seed}|{recipe}"
            if key in results and (recipe != WITH_LEXICAL or key.replace(WITH_LEXICAL, WITH_REFIT) in results):
                continue
            started = time.perf_counter()
            if recipe == "tfidf":
                outcome: dict[str, Any] = {"test_qwk": tfidf_qwk(small)}
            elif recipe == WITH_LEXICAL:  # both variants from one adapter: a paired comparison
                both = with_lexical(small, backbone, seed, key)
                outcome = both[WITH_LEXICAL]
                results[key.replace(WITH_LEXICAL, WITH_REFIT)] = {
                    **both[WITH_REFIT], "train": len(small.train), "validation": len(small.validation),
                    "test": len(small.test), "seconds": round(time.perf_counter() - started, 1)}
            else:
                config = recipe_config(small, TrainConfig(split_layer=3, seed=seed), recipe)  # type: ignore[arg-type]
                result = run_training(small, backbone, config, key)
                confusion = np.asarray(result.metrics["test"]["confusion"])
                outcome = {"test_qwk": float(result.metrics["test"]["qwk"]),  # type: ignore[arg-type]
                           "distinct_predictions": int((confusion.sum(axis=0) > 0).sum()),
                           "best_epoch": result.best_epoch, "config": config.as_dict()}
            results[key] = {**outcome, "train": len(small.train), "validation": len(small.validation),
                            "test": len(small.test), "seconds": round(time.perf_counter() - started, 1)}
            RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def summary(results: dict[str, Any]) -> list[str]:
    """Per size: mean test QWK of each recipe and the paired differences against TF-IDF with 95 % t CIs."""
    models = (*RECIPES, WITH_LEXICAL, WITH_REFIT)
    runs: dict[tuple[str, int, int], dict[str, float]] = {}
    collapsed = dict.fromkeys(models, 0)
    for key, value in results.items():
        item_id, size_text, seed_text, recipe = key.split("|")
        runs.setdefault((item_id, int(size_text), int(seed_text)), {})[recipe] = value["test_qwk"]
        if recipe in collapsed and value.get("distinct_predictions", 2) < 2:
            collapsed[recipe] += 1

    def interval(differences: np.ndarray) -> str:
        half = (float(stats.t.ppf(0.975, len(differences) - 1) * differences.std(ddof=1) / np.sqrt(len(differences)))
                if len(differences) > 1 else float("nan"))
        return f"{differences.mean():+.3f} ± {half:.3f}"

    lines = ["| answers | samples | standard | small-item recipe | small + lexical | small + lexical, refit "
             "| TF-IDF + LR | small − TF-IDF (95 % CI) | small + lexical, refit − TF-IDF (95 % CI) "
             "| refit − not (95 % CI) |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for size in sorted({answers for _, answers, _ in runs}):
        complete = [value for (_, answers, _), value in runs.items() if answers == size and len(value) == 5]
        if not complete:
            continue
        means = {name: float(np.mean([value[name] for value in complete])) for name in (*models, "tfidf")}
        lines.append(f"| {size} | {len(complete)} | {means['standard']:.3f} | {means['small']:.3f} | "
                     f"{means[WITH_LEXICAL]:.3f} | {means[WITH_REFIT]:.3f} | {means['tfidf']:.3f} | "
                     f"{interval(np.array([v['small'] - v['tfidf'] for v in complete]))} | "
                     f"{interval(np.array([v[WITH_REFIT] - v['tfidf'] for v in complete]))} | "
                     f"{interval(np.array([v[WITH_REFIT] - v[WITH_LEXICAL] for v in complete]))} |")
    lines += ["", "Runs that predicted a single score on the whole test set: "
              + ", ".join(f"{name} {count}" for name, count in collapsed.items()) + "."]
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for number, recipe in enumerate((*RECIPES, "tfidf", WITH_LEXICAL, WITH_REFIT)):
        points = sorted((int(key.split("|")[1]), value["test_qwk"]) for key, value in results.items()
                        if key.endswith(f"|{recipe}"))
        sizes = sorted({size for size, _ in points})
        means = [np.mean([q for s, q in points if s == size]) for size in sizes]
        axes.scatter([s * (1 + 0.04 * (number - 1)) for s, _ in points], [q for _, q in points], s=12,
                     color=f"C{number}", alpha=0.5)
        axes.plot(sizes, means, "-o", color=f"C{number}", label={"tfidf": "TF-IDF + LR"}.get(recipe, recipe))
    axes.set_xscale("log")
    axes.set_xlabel("answers per item (train + validation)")
    axes.set_ylabel("test QWK (standard ASAP test set)")
    axes.legend(frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(results: dict[str, Any]) -> Path:
    plot(results, REPORTS / "small_data.png")
    items = sorted({key.split("|")[0] for key in results})
    seeds = sorted({int(key.split("|")[2]) for key in results})
    path = REPORTS / "small_data.md"
    path.write_text("\n".join([
        "# Small items: the small-item recipe against the standard one and a TF-IDF reference", "",
        "small + lexical: the small recipe's adapter and the lexical member (word + char n-gram logistic "
        "regression on the sample's training answers), probabilities averaged, decoded as training/ensemble.py "
        "decodes (fixed cuts below 100 validation answers). small + lexical, refit — what add-item serves by "
        "default — is the same adapter and choice with the lexical member fitted again on training + validation "
        "answers before it is scored on test.", "",
        f"ASAP items {', '.join(items)}; seeds {seeds}; MiniLM, LoRA S=3. Each sample of N answers is split "
        "90/10 into train and validation as add-item does; every model is scored on the item's whole standard "
        "test set. Generated by `python -m studies.small_data_study` from reports/small_data.json.", "",
        *summary(results), "", "![test QWK by item size](small_data.png)", "", *both_languages()]))
    return path


def both_languages() -> list[str]:
    """The regression check's means (English and German, the current recipe), kept beside the size study."""
    from studies.small_data_check import RESULTS as CHECK
    from studies.small_data_check import language_means

    if not CHECK.is_file():
        return []
    return ["## Both languages: the regression check", "",
            "The current recipe on English (ASAP items 1 and 5, 200-answer samples, MiniLM) and German (the two SAF "
            "micro-job questions, ~300 answers, E5) against the same TF-IDF reference; a recipe change that loses "
            "on either language does not ship. Per sample and against the previous recipe: "
            "[small_data_check.md](small_data_check.md) (`python -m studies.small_data_check`).", "",
            *language_means(json.loads(CHECK.read_text())), ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.small_data_study", description=__doc__)
    parser.add_argument("--items", nargs="+", default=["asap-01", "asap-05"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 200, 400])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--report", action="store_true", help="only write the report from the results file")
    args = parser.parse_args(argv)
    results = (json.loads(RESULTS.read_text()) if args.report and RESULTS.is_file()
               else run(args.items, args.sizes, args.seeds))
    print(f"wrote {write_report(results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
