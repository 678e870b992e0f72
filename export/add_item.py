"""add-item: a new item from a scored file to a served head in minutes (train, evaluate, then export its head).

It lives in export because it runs both halves: export builds on training, never the other way round.
`python -m training add-item` reaches it through training's entry point (training/__main__.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.item_ids import ITEM_ID
from core.manifest import item_spec, single_entry
from export.pipeline import ExportOptions, export_all
from training.add_item import DEFAULT_COLUMNS, load_item_file
from training.artifacts import accept_version
from training.backbones import adapter_key, default_split_layer
from training.data import Columns, DataError, ItemData, ScoreRange, read_second_scores, with_second_scores
from training.ensemble_build import ENSEMBLES, apply_choice, build_ensemble, write_ensemble
from training.pipeline import QualityRefused, train_adapter
from training.recipes import Recipe, recipe_config
from training.trainer import TrainConfig

RESERVED_IDS = {ENSEMBLES, "backbones"}  # folders of adapters/ that are not items
# --accurate: the other backbone whose adapter joins the item (the shipped ASAP ensembles pair the two)
ACCURATE_PARTNER = {"minilm-en": "e5-multilingual", "e5-multilingual": "minilm-en"}


def add_item(item_id: str, data: Path, score_range: ScoreRange | None, adapters: Path, out: Path,
             config: TrainConfig, min_test_qwk: float, columns: Columns = DEFAULT_COLUMNS,
             backbone: str = "minilm-en", recipe: Recipe = "auto", accept: str | None = None,
             lexical: bool = True, second_score_column: str | None = None,
             accurate: bool = False) -> dict[str, object]:
    """Validate, split, train (with the recipe for the item's size), evaluate, write adapters/<id>/vN and
    export it. `accept`: serve that already trained version (a refused candidate) instead of training.
    `lexical`: serve the adapter with the lexical member (averaged probabilities, decoded by training's
    ensemble rule): on ASAP that pair beat the adapter alone on cross-fitted validation QWK
    (0.755 vs 0.747, pooled over ten items), and lexical models are strongest on small items.
    `second_score_column`: a second rater's scores; an extra adapter is trained on both raters (<id>-r2).
    `accurate`: the members of the shipped ASAP ensembles (reports/levers.json): an adapter of another seed on
    the same trunk and one on the other backbone (e5-multilingual for a MiniLM item), two trunks per answer.
    Every member trained is served together.
    Returns a summary."""
    if not ITEM_ID.match(item_id):
        raise DataError(data, None, f"item id {item_id!r} must be a slug: [a-z0-9][a-z0-9_-]{{0,63}}")
    if item_id in RESERVED_IDS:
        raise DataError(data, None, f"item id {item_id!r} is reserved (adapters/{item_id}/ holds other files)")
    if accurate and backbone not in ACCURATE_PARTNER:
        raise DataError(data, None, f"--accurate pairs {sorted(ACCURATE_PARTNER)} with each other, not {backbone!r}")
    started = time.perf_counter()
    item = load_item_file(data, item_id, score_range, columns)  # the same split as when it was trained
    if accept is not None:
        adapter = accept_version(adapters, adapter_key(item_id, backbone), accept).config
        members: list[dict[str, Any]] = []
    else:
        config = recipe_config(item, config, recipe)
        adapter, _ = train_adapter(item, adapters, config, backbone, force=True, min_test_qwk=min_test_qwk)
        members = train_members(item, data, adapters, config, backbone, columns, second_score_column, accurate)
    exported = tuple(dict.fromkeys(str(a["backbone"]["name"]) for a in [adapter, *members]))
    if lexical or members:
        # The lexical member is refitted on training + validation answers once the choice is made: on small
        # items every answer counts (reports/small_data.md: refit against not, same adapter and choice).
        # Only this run's adapters: members an earlier --accurate run left behind were trained on other data.
        built, _ = build_ensemble(item, adapters, max_trunks=len(exported), lexical=lexical, force=True,
                                  backbone_folder=backbone if Path(backbone).is_dir() else None, refit_lexical=True,
                                  only={str(a["item_id"]) for a in [adapter, *members]})
        everything = max(built["candidates"], key=lambda candidate: len(candidate["members"]))
        write_ensemble(adapters, apply_choice(built, everything["signature"]))
    trained = time.perf_counter() - started
    key = str(adapter["item_id"])  # item_id, or item_id + the backbone's suffix (e5: "-e5")
    low = item.score_range.low
    texts = {item_id: {name: ([t for t, _ in rows], [s - low for _, s in rows])  # every member's held-out answers
                       for name, rows in (("validation", item.validation), ("test", item.test))}}
    # Only the new item's backbone is exported: the other backbones' heads stay as they were.
    manifest = export_all(ExportOptions(adapters, out, item_texts=texts,
                                        backbone=backbone if Path(backbone).is_dir() else None,
                                        backbones=exported))
    entry, single = manifest["items"][key], single_entry(manifest["items"][key])
    return {"item_id": key, "version": entry["version"], "adapter_version": adapter["version"],
            "members": item_spec(out, key, entry, manifest).member_names,
            "score_range": str(item.score_range),
            "recipe": {name: adapter["train"].get(name) for name in ("min_steps", "class_weighted", "decoding")},
            "sizes": {name: len(rows) for name, rows in item.splits().items()},
            "test_qwk": entry["qwk"]["test"]["qwk_onnx"],
            "test_qwk_adapter_alone": single["qwk"]["test"]["qwk_onnx"],
            "max_abs_logit_diff": single["max_abs_logit_diff"],
            "seconds_train": round(trained, 1), "seconds_total": round(time.perf_counter() - started, 1)}


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
        trained.append(train_adapter(item, adapters, replace(config, split_layer=default_split_layer(other)), other,
                                     force=True)[0])
    return trained


def cmd_add_item(args: argparse.Namespace, config: TrainConfig) -> int:
    """The CLI command; `config` is the training configuration training's CLI built from the options."""
    score_range = ScoreRange.parse(args.score_range) if args.score_range else None
    columns = Columns(text=args.text_column, score=args.score_column, item=None, split=args.split_column)
    try:
        summary = add_item(args.item, Path(args.data), score_range, Path(args.adapters), Path(args.out),
                           config, args.min_qwk, columns, args.backbone, args.recipe, args.accept, args.lexical,
                           args.second_score_column, args.accurate)
    except QualityRefused as exc:
        print(f"\nrefused: {exc}", file=sys.stderr)  # on its own line, after the progress bar
        return 3
    print(json.dumps(summary, indent=2))
    key = summary["item_id"]  # the item id plus the backbone's suffix, if any
    if key != args.item:
        print(f"note: served as {key!r} (items of the {args.backbone} backbone carry its suffix)")
    print(f"{key} {summary['version']} is ready in {summary['seconds_total']} s; a running service picks it "
          f"up with POST /admin/items/{key}/reload (or by itself with SCORER_WATCH_ARTIFACTS_S)")
    return 0
