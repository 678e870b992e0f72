"""add-item --select cv: the new item's configuration chosen by cross-validation over every answer, then the
served model trained on every answer (training/crossval.py says how and why).

What it hands back is what the split-based path hands add_item: the adapter's config and the ensemble to serve
(built with the chosen members and decoding, so that export checks exactly what is served), plus the
cross-validated estimate the quality floor judges."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from training.artifacts import current_record
from training.backbones import resolve_backbone
from training.crossval import CrossValidation, cross_validate, mixed, refit_config, refit_item
from training.data import ItemData
from training.ensemble import FixedDecoding
from training.ensemble_build import apply_choice, build_ensemble
from training.pipeline import Decided, review_threshold, train_adapter
from training.trainer import TrainConfig


@dataclass
class CrossValidated:
    adapter: dict[str, Any]
    ensemble: dict[str, Any] | None
    validation: CrossValidation
    served_item: ItemData  # every answer in train; the curve slice as validation and test (in-sample)


def train_cross_validated(item: ItemData, adapters: Path, config: TrainConfig, backbone: str, lexical: bool,
                          backbone_folder: str | None, key: str) -> CrossValidated:
    answers = [*item.train, *item.validation, *item.test]
    resolved = resolve_backbone(backbone_folder or backbone)
    validation = cross_validate(answers, item, resolved, config, lexical)
    chosen_probabilities = mixed(validation.out_of_fold, validation.chosen)
    decided = Decided(validation.thresholds,
                      review_threshold(chosen_probabilities, list(validation.truth), validation.thresholds),
                      validation.summary())
    served_item = served_item_of(item, config.seed)
    adapter, _ = train_adapter(served_item, adapters, refit_config(config, validation), backbone, force=True,
                               decided=decided)
    ensemble = None
    if lexical:
        # The lexical member is fitted on every answer (the served item's training answers); the subset with the
        # chosen members is served, decoded as chosen. Its validation/test figures are in-sample; the estimate
        # is `validation`'s.
        built, _ = build_ensemble(served_item, adapters, max_trunks=1, lexical=True, force=True,
                                  backbone_folder=backbone_folder,
                                  only={str(adapter["item_id"])}, primary_key=key, write=False,
                                  fixed=FixedDecoding(validation.thresholds))
        wanted = next(c["signature"] for c in built["candidates"]
                      if ("lexical" in c["signature"].split("+")) == validation.chosen.lexical)
        ensemble = apply_choice(built, wanted)
        ensemble["review_threshold"] = decided.review_threshold
        ensemble["selection"] = "cross-validated"
        ensemble["crossval"] = validation.summary()
    return CrossValidated(adapter, ensemble, validation, served_item)


def served_item_of(item: ItemData, seed: int) -> ItemData:
    """The item the served model is trained and exported on: every answer in train, a slice of them as
    validation and test (the trainer's curve and export's parity check; in-sample, nothing is chosen on them).
    Deterministic, so `--accept` of a refused cross-validated run rebuilds the same item from the same file."""
    refit = refit_item(item, [*item.train, *item.validation, *item.test], seed)
    return replace(refit, test=refit.validation)


def crossval_figures(adapters: Path, key: str) -> dict[str, Any] | None:
    """The served adapter's cross-validated figures, or None when it was chosen on the split."""
    record = current_record(adapters, key)
    figures = record.metrics.get("crossval") if record is not None else None
    return dict(figures) if figures else None


def estimate(result: CrossValidated) -> float:
    """What the floor judges: the chosen configuration's out-of-fold QWK over every answer."""
    return float(result.validation.qwk[result.validation.chosen])

