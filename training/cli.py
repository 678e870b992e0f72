"""`python -m training ...`: train adapters, the full fine-tuning baseline, sweeps and the report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from training.asap import ASAP_ITEMS, HUMAN_QWK, load_asap_item
from training.backbones import DEFAULT_BACKBONE, BackboneError, default_learning_rate, default_split_layer
from training.data import DataError
from training.pipeline import train_adapter, train_full_baseline
from training.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[1]
ADAPTERS = REPO / "adapters"
REPORTS = REPO / "reports"
# The baseline's own recipe: a small learning rate for all 22 M weights, fewer epochs.
FULL_DEFAULTS = {"learning_rate": 1e-4, "max_epochs": 5, "batch_size": 16}


TRAIN_OPTION_HELP = {
    "split_layer": "first layer with LoRA; the layers below are the shared trunk (default: the backbone's)",
    "targets": "LoRA targets: a preset of training/encoder.py TARGET_PRESETS (default all-linear)",
    "rank": "LoRA rank (default 8)", "alpha": "LoRA alpha (default 16)",
    "learning_rate": "AdamW learning rate (default: the backbone's, 2e-3; E5 1e-3)",
    "weight_decay": "AdamW weight decay (default 0.01)",
    "max_epochs": "epochs at most (default 8)",
    "min_steps": "optimiser steps at least: more epochs on small items (default 0; the small recipe: 300)",
    "patience": "epochs without a better validation loss before stopping (default 2)",
    "batch_size": "answers per step (default 32; the small recipe: 16)",
    "dropout": "dropout in the trained layers (default 0.1)",
    "frobenius": "weight of the ||delta W||_F^2 penalty (default 0: off)",
    "class_weighted": "inverse-frequency class weights (the small recipe turns them on for skewed items)",
    "decoding": "auto: tuned thresholds when validation says so; fixed: expected score rounded; argmax",
    "seed": "random seed (default 13)",
    "step_precision": "bf16: training steps under CPU autocast (weights and exports stay fp32); auto (default): bf16 "
                      "for the small recipe where the CPU has native bf16, else fp32",
}
TRAIN_OPTION_CHOICES = {"step_precision": ["auto", "fp32", "bf16"], "decoding": ["auto", "argmax", "fixed"]}


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    for spec in fields(TrainConfig):
        if spec.name == "mode":
            continue
        flag = "--" + spec.name.replace("_", "-")
        help_text = TRAIN_OPTION_HELP.get(spec.name)
        if spec.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            caster = {"int": int, "float": float}.get(str(spec.type), str)
            parser.add_argument(flag, type=caster, default=None, help=help_text,
                                choices=TRAIN_OPTION_CHOICES.get(spec.name))


def _config(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    overrides = {spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)
                 if spec.name != "mode" and getattr(args, spec.name, None) is not None}
    return replace(base, **overrides)


def _items(names: list[str]) -> list[str]:
    return ASAP_ITEMS if names == ["all"] else names


def _lora_defaults(args: argparse.Namespace) -> TrainConfig:
    # The split depends on the backbone's depth (MiniLM 6 layers: S=3; E5 12 layers: S=9); the learning rate
    # was studied per backbone (E5: 1e-3).
    return TrainConfig(split_layer=default_split_layer(args.backbone),
                       learning_rate=default_learning_rate(args.backbone))


def cmd_train(args: argparse.Namespace) -> int:
    config = _config(args, _lora_defaults(args))
    # Trained on both raters, an adapter is an extra ensemble member (asap-07-r2), not the item's own.
    tag = args.member_tag if args.member_tag is not None else ("r2" if args.raters == "both" else "")
    for item_id in _items(args.items):
        started = time.perf_counter()
        item = load_asap_item(item_id, raters=args.raters)
        adapter, trained = train_adapter(item, Path(args.adapters), config, args.backbone, args.force,
                                         HUMAN_QWK.get(item_id), member_tag=tag)
        state = "trained" if trained else "current, skipped"
        elapsed = time.perf_counter() - started
        print(f"{adapter['item_id']} {adapter['version']}: {state} in {elapsed:.0f} s", flush=True)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    config = _config(args, replace(TrainConfig(mode="full"), **FULL_DEFAULTS))  # type: ignore[arg-type]
    for item_id in _items(args.items):
        item = load_asap_item(item_id)
        report, trained = train_full_baseline(item, Path(args.out), config, args.backbone, args.force)
        print(f"{item_id} full fine-tuning: test QWK {report['test']['qwk']:.3f} "
              f"({'trained' if trained else 'current, skipped'}, {report['seconds']['total']:.0f} s)", flush=True)
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    """Each item's ensemble of its adapters (+ the lexical member), chosen on validation -> adapters/ensembles/."""
    from tqdm import tqdm

    from training.choice_uncertainty import decision_table, pooled_decision
    from training.ensemble_build import apply_choice, build_ensemble, pooled_choice, write_ensemble

    adapters = Path(args.adapters)
    built = []
    for item_id in tqdm(_items(args.items), desc="ensembles", unit="item"):
        ensemble, fresh = build_ensemble(load_asap_item(item_id), adapters, args.max_trunks,
                                         lexical=args.lexical, force=args.force,
                                         keep_probabilities=REPO / "runs" / "ensemble_probabilities")
        built.append(ensemble)
        tqdm.write(f"{item_id}: {len(ensemble['candidates'])} candidates ({'built' if fresh else 'current'})")
    wanted = None
    if args.selection != "per-item":
        decision = pooled_decision(built)  # how sure the comparison is, stated whichever rule serves
        if args.selection == "pooled-cheapest":
            if decision is None:
                print("error: some ensembles were built before their cross-fitted predictions were kept; rebuild "
                      "them with --force", file=sys.stderr)
                return 2
            wanted = str(decision["cheapest_within_noise"])
        else:
            wanted, _ = pooled_choice(built)
        if decision is not None:
            decision["served"] = wanted
            print(decision_table(decision))
            _keep_decision(decision, args.max_trunks)
    for ensemble in built:
        chosen = apply_choice(ensemble, wanted)
        write_ensemble(adapters, chosen)
        print(f"{chosen['item_id']}: {' + '.join(chosen['chosen']['members'])} ({chosen['version']}), "
              f"cross-fitted validation QWK {chosen['chosen']['crossfit_validation_qwk']:.3f}, "
              f"test QWK {chosen['chosen']['test']['qwk']:.3f}")
    return 0


def _keep_decision(decision: dict[str, object], max_trunks: int) -> None:
    """reports/ensemble_choice.json: the pooled decision per CPU budget (the accuracy report reads it)."""
    path = REPO / "reports" / "ensemble_choice.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    kept[f"max_trunks={max_trunks}"] = decision
    path.write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")


def cmd_domain_adapt(args: argparse.Namespace) -> int:
    """MLM pre-training of a backbone on the ASAP training answers, as a low-rank update of every layer."""
    from training.domain import DomainConfig, adapt

    config = DomainConfig(base=args.base, rank=args.rank, alpha=2.0 * args.rank, epochs=args.epochs, full=args.full)
    name = args.name + ("-full" if args.full else "")
    report = adapt(config, Path(args.adapters) / "backbones" / name, REPO / "runs" / "domain" / name)
    loss = report["held_out_loss"]
    print(f"{name}: held-out masked-token loss {loss['before']:.3f} -> {loss['after']:.3f} "
          f"({report['train_seconds'] / 60:.1f} min)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Validation QWK of LoRA variants (never the test set) -> reports/sweep.json."""
    from training.backbones import resolve_backbone
    from training.pipeline import run_training

    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    backbone = resolve_backbone(args.backbone)
    for variant in args.variants:
        split, targets, lr = variant.split(":")
        config = replace(_config(args, _lora_defaults(args)), split_layer=int(split), targets=targets,
                         learning_rate=float(lr))
        for item_id in _items(args.items):
            key = f"{item_id}|S={split}|{targets}|lr={lr}"
            if key in results:
                continue
            result = run_training(load_asap_item(item_id), backbone, config, key)
            results[key] = {"val_qwk": result.metrics["validation"]["qwk"],
                            "val_qwk_argmax": result.metrics["validation"]["qwk_argmax"],
                            "best_epoch": result.best_epoch, "seconds": result.seconds["total"]}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
            print(key, results[key], flush=True)
    return 0


AddItemCommand = Callable[[argparse.Namespace, TrainConfig], int]


def _add_item_command(implementation: AddItemCommand | None) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if implementation is None:
            print("error: add-item trains and exports; run it as `scorer add-item`", file=sys.stderr)
            return 2
        return implementation(args, _config(args, _lora_defaults(args)))

    return run



def build_parser(add_item: AddItemCommand | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train per-item LoRA adapters into adapters/")
    train.add_argument("--items", nargs="+", default=["all"], help="ASAP item ids, or 'all'")
    train.add_argument("--adapters", default=str(ADAPTERS))
    train.add_argument("--backbone", default=DEFAULT_BACKBONE)
    train.add_argument("--force", action="store_true", help="retrain even when current")
    train.add_argument("--raters", choices=["first", "both"], default="first",
                       help="both: every training answer twice, once with each rater's score (Score1, Score2); "
                            "stored as the extra member <item>-r2")
    train.add_argument("--member-tag", default=None, metavar="TAG",
                       help="store as <item>-TAG, an extra ensemble member beside the item's own adapter "
                            "(e.g. another seed); default: r2 with --raters both, else the item's own adapter")
    _add_train_options(train)
    train.set_defaults(func=cmd_train)

    baseline = sub.add_parser("baseline", help="full fine-tuning per item (metrics only)")
    baseline.add_argument("--items", nargs="+", default=["all"])
    baseline.add_argument("--out", default=str(REPORTS / "full_ft"))
    baseline.add_argument("--backbone", default=DEFAULT_BACKBONE)
    baseline.add_argument("--force", action="store_true")
    _add_train_options(baseline)
    baseline.set_defaults(func=cmd_baseline)

    ensemble = sub.add_parser("ensemble", help="choose each item's ensemble on validation (adapters/ensembles/)",
                              description=cmd_ensemble.__doc__)
    ensemble.add_argument("--items", nargs="+", default=["all"], help="ASAP item ids, or 'all'")
    ensemble.add_argument("--adapters", default=str(ADAPTERS))
    ensemble.add_argument("--max-trunks", type=int, default=2,
                          help="CPU budget: backbones (trunk runs) per answer at most (default 2)")
    ensemble.add_argument("--lexical", action=argparse.BooleanOptionalAction, default=True,
                          help="offer the word + char n-gram member (default on)")
    ensemble.add_argument("--selection", choices=["pooled", "pooled-cheapest", "per-item"], default="pooled",
                          help="pooled (default): one kind of ensemble for all items, the best mean cross-fitted "
                               "validation QWK; pooled-cheapest: the cheapest kind whose gap to that best is within "
                               "the bootstrap's 95 %% interval (training/choice_uncertainty.py; the table is printed "
                               "either way); per-item: each item's own best")
    ensemble.add_argument("--force", action="store_true", help="rebuild even when current")
    ensemble.set_defaults(func=cmd_ensemble)

    domain = sub.add_parser("domain-adapt", help="MLM pre-training on the ASAP training answers (low-rank)",
                            description=cmd_domain_adapt.__doc__)
    domain.add_argument("--base", default=DEFAULT_BACKBONE, help="backbone to adapt (default minilm-en)")
    domain.add_argument("--name", default="minilm-en-asap", help="name of the adapted backbone")
    domain.add_argument("--rank", type=int, default=16, help="rank of the update of every linear module")
    domain.add_argument("--epochs", type=int, default=3, help="passes over the training answers (default 3)")
    domain.add_argument("--full", action="store_true",
                        help="update every weight instead (measures what the low-rank form loses; not committed)")
    domain.add_argument("--adapters", default=str(ADAPTERS))
    domain.set_defaults(func=cmd_domain_adapt)

    sweep = sub.add_parser("sweep", help="validation QWK of LoRA variants S:targets:lr")
    sweep.add_argument("--items", nargs="+", default=["asap-01", "asap-05"])
    sweep.add_argument("--variants", nargs="+", default=["0:all-linear:2e-3", "3:all-linear:2e-3"])
    sweep.add_argument("--out", default=str(REPORTS / "sweep.json"))
    sweep.add_argument("--backbone", default=DEFAULT_BACKBONE)
    _add_train_options(sweep)
    sweep.set_defaults(func=cmd_sweep)

    add = sub.add_parser("add-item", help="train, evaluate and export a new item from a scored file",
                         description="A new item from a scored file to a served head: validate the file, split "
                                     "it, train with the recipe for its size, evaluate on its held-out answers, "
                                     "write adapters/<id>/vN and export the head into --out.")
    add.add_argument("--item", required=True, help="item id (slug: a-z, 0-9, '-', '_'); e5 items are served as "
                                                   "<id>-e5")
    add.add_argument("--data", required=True, help="CSV, TSV or JSONL with answer text and integer score")
    add.add_argument("--score-range", default=None, help="e.g. 0-3 (default: the file's min-max)")
    add.add_argument("--text-column", default="answer", help="column with the answer text")
    add.add_argument("--score-column", default="score", help="column with the integer score")
    add.add_argument("--split-column", default="split",
                     help="optional column: train / validation / test per row (default: a stratified split, "
                          "20 %% test, then 10 %% of the rest for validation)")
    add.add_argument("--min-qwk", type=float, default=0.5,
                     help="quality floor: a version whose test QWK is below it is kept but not served")
    add.add_argument("--accept", default=None, metavar="VERSION",
                     help="serve this already trained version (one the floor refused) without retraining")
    add.add_argument("--recipe", choices=["auto", "standard", "small"], default="auto",
                     help="auto (default): the small-item recipe below 1,000 training answers (training/recipes.py)")
    add.add_argument("--adapters", default=str(ADAPTERS), help="adapter folder (default: adapters/)")
    add.add_argument("--out", default=str(REPO / "build" / "onnx"), help="artifact folder to export into")
    add.add_argument("--backbone", default=None, help="minilm-en (English, the default) or e5-multilingual; with "
                                                      "--accept: the backbone whose adapter has that version")
    add.add_argument("--lexical", action=argparse.BooleanOptionalAction, default=True,
                     help="serve the adapter together with a word + char n-gram model of the item (default; "
                          "seconds more); --no-lexical: the adapter alone")
    add.add_argument("--second-score-column", default=None, metavar="COLUMN",
                     help="a second rater's scores: an extra adapter trained on both raters joins the item")
    add.add_argument("--accurate", action="store_true",
                     help="the shipped ASAP recipe: a second-seed adapter and one on the other backbone (E5 for a "
                          "MiniLM item) join too; two trunk runs per answer, several minutes more training")
    add.add_argument("--select", choices=["split", "cv"], default="split",
                     help="split (default): choose on the validation split, judge on the test split; cv: choose "
                          "members, decoding and steps by 5-fold cross-validation over every answer, judge the "
                          "cross-validated QWK, then train the served model on every answer (about 6x the "
                          "training time; studies/crossval_check.py measures it)")
    _add_train_options(add)
    add.set_defaults(func=_add_item_command(add_item))

    return parser


def main(argv: list[str] | None = None, add_item: AddItemCommand | None = None) -> int:
    """`add_item`: the add-item command's implementation, bound by `scorer add-item` (cli/add_item.py)."""
    args = build_parser(add_item).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result: int = args.func(args)
        return result
    except (DataError, BackboneError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
