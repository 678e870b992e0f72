"""`scorer report` (`python -m studies.report`): reports/accuracy.md plus plots, from the saved metrics files."""

from __future__ import annotations

from pathlib import Path

from scipy.stats import ttest_rel

from studies.report_data import DASH, ItemResult, Json, kind_note, load_items, other_backbones, read_json
from studies.report_data import fmt as _fmt
from studies.report_data import table as _table
from studies.report_ensembles import ensemble_section, read_ensembles
from studies.report_levers import domain_section, levers_section, weights_section
from studies.report_outlook import outlook_section
from studies.report_pilots import (
    capacity_section,
    domain_members_section,
    e5_recipe_section,
    e5_shipped_section,
    mpnet_section,
    shape_section,
)
from studies.report_plots import plot_confusions, plot_curves, plot_qwk
from studies.report_tiers import choice_section, evidence_section, tiers_section
from training.backbones import DEFAULT_BACKBONE
from training.metrics import fisher_z_mean

REPO = Path(__file__).resolve().parents[1]



def _train_seconds(report: Json) -> float:
    seconds: dict[str, float] = report["seconds"]
    return seconds.get("train", seconds["total"])


def _item_section(items: list[ItemResult]) -> list[str]:
    backbones = other_backbones(items)
    header = ["item", "scores", "n train/val/test", "adapter QWK", "QWK argmax", "accuracy", "macro-F1",
              "full-FT QWK", "human QWK", "adapter train s", "full-FT train s",
              *[f"{name} QWK" for name in backbones], *[f"{name} train s" for name in backbones]]
    rows = []
    for item in items:
        test, sizes = item.metrics["test"], item.metrics["sizes"]
        other_time = [_train_seconds(item.others[name][0]) if name in item.others else None for name in backbones]
        rows.append([
            item.item_id, f"{item.low}–{item.high}",
            f"{sizes['train']}/{sizes['validation']}/{sizes['test']}",
            _fmt(test["qwk"]), _fmt(test["qwk_argmax"]), _fmt(test["accuracy"]), _fmt(test["macro_f1"]),
            _fmt(item.full["test"]["qwk"] if item.full else None), _fmt(item.human),
            _fmt(_train_seconds(item.metrics), 0), _fmt(_train_seconds(item.full) if item.full else None, 0),
            *[_fmt(item.other_qwk(name)) for name in backbones], *[_fmt(value, 0) for value in other_time],
        ])
    note = [] if not backbones else [
        "", f"\"adapter\" columns: the default backbone ({DEFAULT_BACKBONE}); "
        + "; ".join(f"{name} columns: {kind_note(name)}" for name in backbones) + "."]
    return ["## Per item (test split)", "", *_table(header, rows), *note]


def _means_section(items: list[ItemResult]) -> list[str]:
    groups = {
        "LoRA adapters": [item.metrics["test"]["qwk"] for item in items],
        "full fine-tuning": [item.full["test"]["qwk"] for item in items if item.full],
        **{f"LoRA adapters on {name}": [value for item in items if (value := item.other_qwk(name)) is not None]
           for name in other_backbones(items)},
        "human (Score1 vs Score2)": [item.human for item in items if item.human is not None],
    }
    rows = [[name, str(len(values)), _fmt(sum(values) / len(values) if values else None),
             _fmt(fisher_z_mean(values) if values else None)] for name, values in groups.items()]
    return ["## Means over items (test QWK)", "",
            *_table(["scorer", "items", "arithmetic mean", "Fisher-z mean"], rows)]


def _ttest_section(items: list[ItemResult]) -> list[str]:
    pairs = [(item.metrics["test"]["qwk"], item.full["test"]["qwk"]) for item in items if item.full]
    lines = ["## Adapters vs full fine-tuning", ""]
    if len(pairs) < 2:
        return [*lines, f"Too few items with both results for a paired t-test "
                f"({len(pairs)}; it needs at least 2)."]
    adapter, full = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    result = ttest_rel(adapter, full)
    difference = sum(a - f for a, f in pairs) / len(pairs)
    return [*lines, f"Paired t-test over {len(pairs)} items: mean difference (adapter − full) "
            f"{difference:+.3f}, t = {float(result.statistic):.3f}, p = {float(result.pvalue):.3g}."]


def _backbone_section(items: list[ItemResult]) -> list[str]:
    """Each further backbone or training variant against the default adapter, on the items that have both."""
    lines: list[str] = []
    for name in other_backbones(items):
        pairs = [(value, item.metrics["test"]["qwk"]) for item in items if (value := item.other_qwk(name)) is not None]
        chose = [item.other_qwk(name, "validation") - item.metrics["validation"]["qwk"]
                 for item in items if name in item.others]
        difference = sum(a - b for a, b in pairs) / len(pairs)
        text = (f"{name} ({kind_note(name)}) vs {DEFAULT_BACKBONE} over {len(pairs)} items: mean validation-QWK "
                f"difference {sum(chose) / len(chose):+.3f}; mean test-QWK difference "
                f"({name} − {DEFAULT_BACKBONE}) {difference:+.3f}")
        if len(pairs) >= 2:
            result = ttest_rel([a for a, _ in pairs], [b for _, b in pairs])
            text += f", paired t = {float(result.statistic):.3f}, p = {float(result.pvalue):.3g}"
        lines += [f"- {text}; better on {sum(a > b for a, b in pairs)} of {len(pairs)} items."]
    return ["## Other backbones and training variants (each adapter alone)", "", *lines] if lines else []


def _time_section(items: list[ItemResult]) -> list[str]:
    train = [_train_seconds(item.metrics) for item in items]
    total = [float(item.metrics["seconds"]["total"]) for item in items]
    lines = ["## Adapter training time", "",
             f"Training: {sum(train):.0f} s in all, {sum(train) / len(train):.0f} s per item (with trunk "
             f"caching and evaluation: {sum(total):.0f} s, {sum(total) / len(total):.0f} s per item)."]
    for name in other_backbones(items):
        runs = [item.others[name][0] for item in items if name in item.others]
        other_train = [_train_seconds(metrics) for metrics in runs]
        other_total = [float(metrics["seconds"]["total"]) for metrics in runs]
        lines += ["", f"{name} ({len(runs)} items): training {sum(other_train):.0f} s in all, "
                  f"{sum(other_train) / len(runs):.0f} s per item (with trunk caching and evaluation: "
                  f"{sum(other_total):.0f} s, {sum(other_total) / len(runs):.0f} s per item)."]
    return lines


def _config_section(items: list[ItemResult]) -> list[str]:
    used: dict[str, list[str]] = {}
    configs = [(item.item_id, DEFAULT_BACKBONE, item.config) for item in items]
    configs += [(item.item_id, name, config) for item in items for name, (_, config) in sorted(item.others.items())]
    for item_id, backbone, config in configs:
        train = config["train"]
        key = (f"{backbone}: S = {config['split_layer']}, targets {train['targets']}, rank {train['rank']}, "
               f"alpha {train['alpha']:g}, lr {train['learning_rate']:g}"
               + (", class-weighted loss" if train.get("class_weighted") else ""))
        used.setdefault(key, []).append(item_id)
    return ["## LoRA configuration", "", *[f"- {key}: {', '.join(ids)}" for key, ids in used.items()]]


def _sweep_section(path: Path) -> list[str]:
    if not path.is_file():
        return []
    rows = []
    for key, result in read_json(path).items():
        item_id, _, variant = key.partition("|")
        rows.append([item_id, variant.replace("|", " "), _fmt(result.get("val_qwk")),
                     _fmt(result.get("val_qwk_argmax")), str(result.get("best_epoch", DASH)),
                     _fmt(result.get("seconds"), 0)])
    header = ["item", "variant", "val QWK", "val QWK argmax", "best epoch", "seconds"]
    intro = ("Variants are compared on each item's validation split only (the test split is not looked at). "
             "S is the first layer that carries LoRA: the layers below it are the trunk every item shares, "
             "so a larger S is cheaper to serve. Seconds: one training run's wall time.")
    return ["## Sweep (validation split)", "", intro, "", *_table(header, rows)]


DECODERS = ("tuned", "argmax", "fixed", "bagged", "cv-pick")


def _decoding_section(path: Path) -> list[str]:
    if not path.is_file():
        return []
    results = read_json(path)
    rows = [[item_id, *(_fmt(result["test_qwk"][name]) for name in DECODERS), str(result["cv_pick"])]
            for item_id, result in sorted(results.items())]
    means = [_fmt(sum(result["test_qwk"][name] for result in results.values()) / len(results)) for name in DECODERS]
    rows.append(["mean", *means, DASH])
    intro = ("`python -m studies.decoding_study`: the committed adapters' probabilities decoded five ways, test QWK. "
             "tuned: the shipped cut points on the expected score, tuned on validation; fixed: cuts at k + 0.5; "
             "bagged: median of cuts tuned on 30 bootstrap resamples of validation; cv-pick: per item, whichever of "
             "argmax / tuned / bagged scored best in 5-fold cross-validation on validation.")
    return ["## Decoding rules compared", "", intro, "",
            *_table(["item", *DECODERS, "cv picked"], rows)]


def _reproduce_section() -> list[str]:
    return ["## How to reproduce", "", "```",
            "python -m training train --items all", "python -m training baseline --items all",
            "python -m training --threads 2 train --backbone e5-multilingual --items all",
            "python -m training sweep --items asap-01 asap-05 --variants 0:all-linear:2e-3 3:all-linear:2e-3",
            "python -m training train --raters both --items all",
            "python -m training train --seed 14 --member-tag s14 --items all",
            "python -m training ensemble --items all",
            "python -m studies.lever_study", "python -m studies.weights_study",
            "python -m training domain-adapt --name minilm-en-asap",
            "python -m training train --backbone minilm-en-asap --items all --adapters runs/domain-pilot",
            "python -m studies.domain_report",
            "python -m training train --backbone mpnet-en --items asap-07 asap-08 --adapters runs/mpnet-pilot",
            "python -m studies.mpnet_pilot",
            "python -m training train --rank 16 --alpha 32 --member-tag r16 --adapters runs/shape-sweep",
            "python -m training train --split-layer 2 --member-tag s2 --adapters runs/shape-sweep",
            "python -m studies.shape_study",
            "python -m studies.decoding_study", "scorer report", "```"]


def shipped_kind(adapters: Path) -> str | None:
    """The kind of ensemble served (the pooled choice: the same for every item), if there are ensembles."""
    kinds = {ensemble["chosen"]["signature"] for ensemble in read_ensembles(adapters).values()}
    return kinds.pop() if len(kinds) == 1 else None


def write_report(adapters: Path, full_dir: Path, out: Path) -> Path:
    items = load_items(adapters, full_dir)
    if not items:
        raise ValueError(f"no trained items in {adapters / 'manifest.json'}")
    out.mkdir(parents=True, exist_ok=True)
    plot_qwk(items, out / "qwk_per_item.png")
    plot_curves(items, out / "training_curves.png")
    plot_confusions(items, out / "confusion_matrices.png")
    sections = [
        ["# Accuracy of the per-item LoRA adapters", "",
         "QWK is quadratic weighted kappa over each item's full score range; human QWK is Score1 vs Score2.",
         "", "![QWK per item](qwk_per_item.png)"],
        _item_section(items), _means_section(items), _ttest_section(items), _backbone_section(items),
        ensemble_section(items, adapters, REPO / "bench" / "results"), choice_section(out / "ensemble_choice.json"),
        tiers_section(REPO / "bench" / "results"), outlook_section(items, out, REPO / "bench" / "results"),
        evidence_section(REPO / "bench" / "results"),
        levers_section(out, shipped_kind(adapters), REPO / "bench" / "results" / "ensemble_configs.json"),
        weights_section(out), domain_section(out), domain_members_section(out), mpnet_section(out),
        capacity_section(out, adapters),
        shape_section(out), e5_recipe_section(out), e5_shipped_section(adapters), _time_section(items),
        _config_section(items), _sweep_section(out / "sweep.json"),
        _decoding_section(out / "decoding.json"), _reproduce_section(),
        ["## Plots", "", "![training curves](training_curves.png)", "",
         "![confusion matrices](confusion_matrices.png)"],
    ]
    path = out / "accuracy.md"
    path.write_text("\n\n".join("\n".join(section) for section in sections if section) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """`scorer report` (`python -m studies.report`): reports/accuracy.md and its plots from what is committed."""
    import argparse

    parser = argparse.ArgumentParser(prog="scorer report", description=main.__doc__)
    parser.add_argument("--adapters", default=str(REPO / "adapters"))
    parser.add_argument("--full", default=str(REPO / "reports" / "full_ft"))
    parser.add_argument("--out", default=str(REPO / "reports"))
    args = parser.parse_args(argv)
    print(f"wrote {write_report(Path(args.adapters), Path(args.full), Path(args.out))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
