"""`scorer add-item`: a new item from a scored file to a served head in minutes (train, choose, judge, export).

It lives in cli, above training and export, because it runs both halves: neither package imports the other
the wrong way round (training never imports export)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cli.crossval_item import crossval_figures, estimate, served_item_of, train_cross_validated
from core.item_ids import ITEM_ID
from core.manifest import item_spec, single_entry
from export.pipeline import ExportOptions, export_all
from training.add_item import DEFAULT_COLUMNS, evidence_rows, load_item_file
from training.artifacts import current_versions, restore_current
from training.backbones import DEFAULT_BACKBONE, adapter_key, default_learning_rate, default_split_layer
from training.candidates import (
    accept_candidate,
    adapter_test_qwk,
    backbone_of_version,
    current_record_of,
    keep_candidate,
)
from training.data import Columns, DataError, ItemData, ScoreRange, read_second_scores, with_second_scores
from training.ensemble_build import ENSEMBLES, apply_choice, build_ensemble, write_ensemble
from training.pipeline import QualityRefused, train_adapter
from training.recipes import Recipe, recipe_config
from training.trainer import TrainConfig

# the recipe settings the summary shows (training/recipes.py sets them by the item's size)
RECIPE_FIELDS = ("min_steps", "batch_size", "step_precision", "class_weighted", "decoding")
RESERVED_IDS = {ENSEMBLES, "backbones"}  # folders of adapters/ that are not items
# --accurate: the other backbone whose adapter joins the item (the shipped ASAP ensembles pair the two)
ACCURATE_PARTNER = {"minilm-en": "e5-multilingual", "e5-multilingual": "minilm-en"}


def add_item(item_id: str, data: Path, score_range: ScoreRange | None, adapters: Path, out: Path,
             config: TrainConfig, min_test_qwk: float, columns: Columns = DEFAULT_COLUMNS,
             backbone: str = "minilm-en", recipe: Recipe = "auto", accept: str | None = None,
             lexical: bool = True, second_score_column: str | None = None,
             accurate: bool = False, select: str = "split") -> dict[str, object]:
    """Validate, split, train (with the recipe for the item's size), choose what to serve, judge it, write
    adapters/<key>/vN and export it. The item is served as <key> (the id plus the backbone's suffix: x, x-e5),
    and nothing else that is served changes.

    What is served is chosen per item on validation: the adapter alone, or with the lexical member (averaged
    probabilities) and the extra members, whichever combination validation prefers (ties: fewer members).
    The quality floor judges exactly that on the test answers; a refused run changes nothing that is served
    and keeps its adapters and choice as a candidate for `accept`.
    `second_score_column`: a second rater's scores; an extra adapter is trained on both raters (<key>-r2).
    `accurate`: the members of the shipped ASAP ensembles (reports/levers.json): an adapter of another seed on
    the same trunk and one on the other backbone (e5-multilingual for a MiniLM item), two trunks per answer.
    `select`: "split" (default) chooses on the validation split and judges on the test split; "cv" chooses by
    5-fold cross-validation over every answer, judges the cross-validated estimate and then trains the served
    model on every answer (cli/crossval_item.py; about 6x the training time).
    Returns a summary."""
    if not ITEM_ID.match(item_id):
        raise DataError(data, None, f"item id {item_id!r} must be a slug: [a-z0-9][a-z0-9_-]{{0,63}}")
    if item_id in RESERVED_IDS:
        raise DataError(data, None, f"item id {item_id!r} is reserved (adapters/{item_id}/ holds other files)")
    if select == "cv" and (accurate or second_score_column):
        raise DataError(data, None, "--select cv chooses between the adapter and the lexical member; it does not "
                                    "take --accurate or --second-score-column")
    if accurate and backbone not in ACCURATE_PARTNER:
        raise DataError(data, None, f"--accurate pairs {sorted(ACCURATE_PARTNER)} with each other, not {backbone!r}")
    started = time.perf_counter()
    item = load_item_file(data, item_id, score_range, columns)  # the same split as when it was trained
    key = adapter_key(item_id, backbone)
    backbone_folder = backbone if Path(backbone).is_dir() else None
    if accept is not None:
        adapter, ensemble = accept_candidate(adapters, key, accept)
        if crossval_figures(adapters, key) is not None:  # a cross-validated run: trained on every answer
            item = served_item_of(item, int(adapter["train"]["seed"]))
    else:
        before = current_versions(adapters)
        config = recipe_config(item, config, recipe)
        if select == "cv":
            crossval = train_cross_validated(item, adapters, config, backbone, lexical, backbone_folder, key)
            adapter, ensemble, item = crossval.adapter, crossval.ensemble, crossval.served_item
            run = {key: str(adapter["version"])}
            served_qwk = estimate(crossval)
            judged = f"scored cross-validated QWK {served_qwk:.3f} over {len(crossval.validation.truth)} answers"
        else:
            adapter, ensemble, run = train_split(item, data, adapters, config, backbone, columns,
                                                 second_score_column, accurate, lexical, backbone_folder, key)
            served_qwk = float(ensemble["chosen"]["test"]["qwk"] if ensemble else adapter_test_qwk(adapters, key))
            judged = f"scored test QWK {served_qwk:.3f} on {len(item.test)} held-out answers"
        if served_qwk < min_test_qwk:
            for name in run:
                restore_current(adapters, name, before.get(name))
            keep_candidate(adapters, key, run, ensemble)
            command = _accept_command(item_id, data, score_range, columns, backbone, adapters, out, run[key])
            served = (f"{before[key]} stays the served version" if before.get(key)
                      else "nothing is served for this item yet")
            raise QualityRefused(
                f"{key}: what would be served ({_served_names(ensemble, key)}) {judged}, below the floor "
                f"{min_test_qwk:.2f} (--min-qwk), so {served} "
                f"and nothing else changed. The trained version {run[key]} is kept as a candidate. To serve it "
                f"anyway, without retraining:\n  {command}", key, run[key])
    if ensemble is not None:
        write_ensemble(adapters, ensemble)
    trained = time.perf_counter() - started
    members_now = [str(m["adapter"]) for m in (ensemble or {}).get("members", []) if m.get("kind") == "adapter"]
    exported = tuple(dict.fromkeys(str(current_record_of(adapters, name)["backbone"]["name"])
                                   for name in [key, *members_now]))
    figures = crossval_figures(adapters, key)
    low = item.score_range.low
    texts = {item_id: {name: ([t for t, _ in rows], [s - low for _, s in rows])  # every member's held-out answers
                       for name, rows in (("validation", item.validation), ("test", item.test))}}
    # Only the new item's backbones are exported, and only its own heads are checked in full: every other
    # head keeps its entry as it was (a `make serve` export checked them on their golden answers).
    manifest = export_all(ExportOptions(adapters, out, item_texts=texts, backbone=backbone_folder,
                                        backbones=exported, recheck=frozenset([key, *members_now]),
                                        evidence_rows={item_id: evidence_rows(data, _evidence_item(item, figures),
                                                                              columns)}))
    entry, single = manifest["items"][key], single_entry(manifest["items"][key])
    return {"item_id": key, "version": entry["version"], "adapter_version": adapter["version"],
            "members": item_spec(out, key, entry, manifest).member_names,
            "score_range": str(item.score_range),
            "recipe": {name: adapter["train"].get(name, getattr(TrainConfig(), name)) for name in RECIPE_FIELDS},
            "choice": _choice_summary(ensemble),
            "sizes": {name: len(rows) for name, rows in item.splits().items()},
            **_quality(entry, single, figures),
            "max_abs_logit_diff": single["max_abs_logit_diff"],
            "seconds_train": round(trained, 1), "seconds_total": round(time.perf_counter() - started, 1)}


def train_split(item: ItemData, data: Path, adapters: Path, config: TrainConfig, backbone: str, columns: Columns,
                second_score_column: str | None, accurate: bool, lexical: bool, backbone_folder: str | None,
                key: str) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, str]]:
    """The default choice: members and decoding on the validation split (adapter, ensemble, {key: version})."""
    adapter, _ = train_adapter(item, adapters, config, backbone, force=True)
    members = train_members(item, data, adapters, config, backbone, columns, second_score_column, accurate)
    run = {str(a["item_id"]): str(a["version"]) for a in [adapter, *members]}
    exported_now = {str(a["backbone"]["name"]) for a in [adapter, *members]}
    ensemble = None
    if lexical or members:
        # The lexical member is refitted on training + validation answers once the choice is made: on small
        # items every answer counts (reports/small_data.md). Only this run's adapters are candidates.
        built, _ = build_ensemble(item, adapters, max_trunks=len(exported_now), lexical=lexical, force=True,
                                  backbone_folder=backbone_folder, refit_lexical=True, only=set(run),
                                  primary_key=key, write=False)
        ensemble = apply_choice(built)
    return adapter, ensemble, run


def _evidence_item(item: ItemData, crossval: dict[str, Any] | None) -> ItemData:
    """A cross-validated item has every answer in train (the curve slice repeats some): each once."""
    return replace(item, validation=[]) if crossval is not None else item


def _quality(entry: dict[str, Any], single: dict[str, Any], crossval: dict[str, Any] | None) -> dict[str, object]:
    if crossval is None:
        return {"test_qwk": entry["qwk"]["test"]["qwk_onnx"],
                "test_qwk_adapter_alone": single["qwk"]["test"]["qwk_onnx"]}
    # trained on every answer: no held-out figure; the estimate is the cross-validated one
    return {"crossval": crossval, "test_qwk": None}


def _served_names(ensemble: dict[str, Any] | None, key: str) -> str:
    if ensemble is None:
        return f"{key} alone"
    return " + ".join(str(m.get("adapter", "lexical")) for m in ensemble["members"])


def _choice_summary(ensemble: dict[str, Any] | None) -> dict[str, object] | None:
    """What validation chose among the candidates, with the numbers that chose it."""
    if ensemble is None:
        return None
    return {"served": ensemble["chosen"]["signature"], "rule": "best validation QWK, ties to fewer members",
            "candidates": {c["signature"]: {"validation_qwk": c["crossfit_validation_qwk"],
                                            "test_qwk": c["test"]["qwk"]} for c in ensemble["candidates"]}}


def _accept_command(item_id: str, data: Path, score_range: ScoreRange | None, columns: Columns, backbone: str,
                    adapters: Path, out: Path, version: str) -> str:
    """The exact add-item command that serves this candidate (copy-paste runnable)."""
    parts = ["scorer add-item", f"--item {item_id}", f"--data {shlex.quote(str(data))}",
             f"--backbone {shlex.quote(backbone)}", f"--accept {version}",
             f"--adapters {shlex.quote(str(adapters))}", f"--out {shlex.quote(str(out))}"]
    if score_range is not None:
        parts.append(f"--score-range {score_range}")
    for flag, value, default in (("--text-column", columns.text, DEFAULT_COLUMNS.text),
                                 ("--score-column", columns.score, DEFAULT_COLUMNS.score),
                                 ("--split-column", columns.split, DEFAULT_COLUMNS.split)):
        if value != default:
            parts.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


def train_members(item: ItemData, data: Path, adapters: Path, config: TrainConfig, backbone: str,
                  columns: Columns, second_score_column: str | None, accurate: bool) -> list[dict[str, Any]]:
    """The extra members' adapters (their configs)."""
    trained = []
    if second_score_column:
        second = read_second_scores(data, columns.text, second_score_column, item.score_range)
        if not second:
            raise DataError(data, None, f"no second scores in column {second_score_column!r}")
        trained.append(train_adapter(with_second_scores(item, second), adapters, config, backbone, force=True,
                                     member_tag="r2")[0])
    if accurate:
        other = ACCURATE_PARTNER[backbone]
        seed = config.seed + 1  # the ASAP ensembles' second MiniLM member: seed 14 beside 13 (tag s14)
        trained.append(train_adapter(item, adapters, replace(config, seed=seed), backbone, force=True,
                                     member_tag=f"s{seed}")[0])
        # The partner trains at its own backbone's defaults unless the user set the learning rate.
        learning_rate = config.learning_rate if config.learning_rate != default_learning_rate(backbone) \
            else default_learning_rate(other)
        trained.append(train_adapter(item, adapters, replace(config, split_layer=default_split_layer(other),
                                                             learning_rate=learning_rate), other, force=True)[0])
    return trained


def cmd_add_item(args: argparse.Namespace, config: TrainConfig) -> int:
    """The CLI command; `config` is the training configuration training's CLI built from the options."""
    score_range = ScoreRange.parse(args.score_range) if args.score_range else None
    columns = Columns(text=args.text_column, score=args.score_column, item=None, split=args.split_column)
    backbone = args.backbone
    if backbone is None and args.accept is not None:  # the backbone whose adapter has that version
        found = backbone_of_version(Path(args.adapters), args.item, args.accept)
        if len(found) != 1:
            print(f"error: {args.item} {args.accept} exists for backbones {found or 'none'}; say which with "
                  f"--backbone", file=sys.stderr)
            return 2
        backbone = found[0]
    try:
        summary = add_item(args.item, Path(args.data), score_range, Path(args.adapters), Path(args.out),
                           config, args.min_qwk, columns, backbone or DEFAULT_BACKBONE, args.recipe, args.accept,
                           args.lexical, args.second_score_column, args.accurate, args.select)
    except QualityRefused as exc:
        print(f"\nrefused: {exc}", file=sys.stderr)  # on its own line, after the progress bar
        return 3
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    key = summary["item_id"]  # the item id plus the backbone's suffix, if any
    if key != args.item:
        print(f"note: served as {key!r} (items of the {backbone} backbone carry its suffix)")
    print(f"{key} {summary['version']} is ready in {summary['seconds_total']} s; a running service picks it "
          f"up with:\n  curl -s -X POST localhost:8000/admin/items/{key}/reload\n(or by itself with "
          f"SCORER_WATCH_ARTIFACTS_S)")
    return 0


def run_training_cli(argv: list[str]) -> int:
    """training's argument parser (its add-item options) bound to this implementation."""
    from training.cli import main as training_main

    return training_main(argv, add_item=cmd_add_item)
