"""One item end to end: tokenize, train (LoRA or full fine-tuning), evaluate, write artifacts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from core.decoding import DEFAULT_REVIEW_THRESHOLD, decode
from core.fingerprints import fingerprint
from training.artifacts import (
    current_record,
    data_fingerprint,
    model_card,
    save_adapter,
)
from training.backbones import ResolvedBackbone, adapter_key, resolve_backbone
from training.data import ItemData
from training.encoder import adapter_state, build_model, load_backbone_weights
from training.tokenize import encode_texts, load_tokenizer
from training.trainer import FeatureSource, TrainConfig, TrainResult, predict_proba, train_item


class QualityRefused(RuntimeError):
    """A newly trained version did not reach the quality floor: it is kept as a candidate, not served."""

    def __init__(self, message: str, item_id: str, version: str) -> None:
        super().__init__(message)
        self.item_id = item_id
        self.version = version


@dataclass(frozen=True)
class Decided:
    """Decoding and review threshold chosen before training, on every answer's out-of-fold predictions
    (add-item --select cv, training/crossval.py), and the figures behind them for the model card. The model
    is then trained on every answer, so its own validation and test figures are in-sample."""
    thresholds: list[float] | None
    review_threshold: float
    figures: dict[str, object]


REVIEW_TARGET_ACCURACY = 0.9  # answers at or above the review threshold were right this often on validation
REVIEW_DEFAULT = DEFAULT_REVIEW_THRESHOLD
REVIEW_MIN_ANSWERS = 50


def review_threshold(probabilities: np.ndarray, truth: list[int], thresholds: list[float] | None) -> float:
    """Lowest confidence c such that validation answers with confidence >= c reach the target accuracy.

    Below REVIEW_MIN_ANSWERS validation answers the cut would be fitted to a handful of answers (one small
    item flagged nothing at 0.07): the default applies."""
    if len(truth) < REVIEW_MIN_ANSWERS:
        return REVIEW_DEFAULT
    predicted = decode(probabilities, thresholds)
    confidence = probabilities[np.arange(len(predicted)), predicted]
    correct = predicted == np.asarray(truth)
    for cut in np.sort(np.unique(np.round(confidence, 2))):
        kept = confidence >= cut
        if kept.sum() >= max(10, len(truth) // 10) and correct[kept].mean() >= REVIEW_TARGET_ACCURACY:
            return float(cut)
    return REVIEW_DEFAULT


def encode_item(item: ItemData, backbone: ResolvedBackbone) -> dict[str, tuple[list[list[int]], list[int]]]:
    tokenizer = load_tokenizer(backbone.path, backbone.spec.max_length)
    low = item.score_range.low
    return {
        name: (encode_texts(tokenizer, [text for text, _ in rows], backbone.spec.text_prefix),
               [score - low for _, score in rows])
        for name, rows in item.splits().items()
    }


def _fingerprint(item: ItemData, backbone: ResolvedBackbone, config: TrainConfig) -> str:
    return fingerprint({
        "data": data_fingerprint(item.splits()),
        "backbone": backbone.weights_sha256,
        "train": config.as_dict(),
        "score_range": str(item.score_range),
    })


def run_training(item: ItemData, backbone: ResolvedBackbone, config: TrainConfig, desc: str) -> TrainResult:
    torch.manual_seed(config.seed)
    model = build_model(backbone.path, config.split_layer if config.mode == "lora" else 0,
                        item.score_range.size, config.dropout, load_backbone_weights(backbone.path))
    data = encode_item(item, backbone)
    steps = -(-len(item.train) // config.batch_size) * config.epochs_for(len(item.train))
    with tqdm(total=steps, desc=desc, unit="step", leave=False) as bar:
        def on_epoch(record: Any) -> None:
            bar.set_postfix(epoch=record.epoch, val_loss=f"{record.val_loss:.3f}", val_qwk=f"{record.val_qwk:.3f}")

        return train_item(model, config, data, on_epoch=on_epoch, on_step=lambda: bar.update(1))


def train_adapter(
    item: ItemData, root: Path, config: TrainConfig, backbone_name: str = "minilm-en",
    force: bool = False, human_qwk: float | None = None, min_test_qwk: float | None = None,
    member_tag: str = "", decided: Decided | None = None,
) -> tuple[dict[str, Any], bool]:
    """Train and save a new version unless the current one was made from the same data and settings.

    member_tag: stored as <key>-<tag> (asap-07-r2), an extra ensemble member beside the item's own adapter,
    which it never replaces (that one stays what the fast single-head mode serves).
    decided: decoding and review threshold chosen by cross-validation (add-item --select cv).
    Returns (config of the current version, whether it was trained now)."""
    backbone = resolve_backbone(backbone_name)
    # Each backbone's adapter of an item has its own key (asap-01 / asap-01-e5): neither overwrites the other.
    source_item = item.item_id
    key = adapter_key(source_item, backbone_name) + (f"-{member_tag}" if member_tag else "")
    item = replace(item, item_id=key)
    fingerprint = _fingerprint(item, backbone, config)
    existing = current_record(root, item.item_id)
    if existing and existing.config.get("fingerprint") == fingerprint and not force:
        return existing.config, False
    result = run_training(item, backbone, config, item.item_id)
    test_qwk = float(result.metrics["test"]["qwk"])  # type: ignore[arg-type]
    refused = min_test_qwk is not None and test_qwk < min_test_qwk
    model = result.model
    data = encode_item(item, backbone)
    source = FeatureSource(model, data["validation"][0], cache_trunk=False, batch_size=config.batch_size)
    val_probs = predict_proba(model, source, config.batch_size)  # the same probabilities serving will see
    adapter_config = {
        "item_id": item.item_id,
        "source_item": source_item,  # the data set item (export finds its validation/test answers by it)
        "score_range": {"low": item.score_range.low, "high": item.score_range.high},
        "labels": item.score_range.labels,
        "backbone": backbone.describe(),
        "split_layer": config.split_layer,
        "num_layers": config.split_layer + len(model.head.layers),
        "max_length": backbone.spec.max_length,
        "text_prefix": backbone.spec.text_prefix,
        "pooling": backbone.spec.pooling,
        "train": config.as_dict(),
        "decoding": {"thresholds": decided.thresholds if decided else result.thresholds},
        "review_threshold": decided.review_threshold if decided else
        review_threshold(val_probs, data["validation"][1], result.thresholds),
        "fingerprint": fingerprint,
        **({"member_tag": member_tag} if member_tag else {}),
    }
    metrics = {
        **result.metrics,
        "sizes": {name: len(rows) for name, rows in item.splits().items()},
        "best_epoch": result.best_epoch,
        "steps": {"trained": result.steps, "kept": result.kept_steps, "minimum": config.min_steps},
        "curve": [vars(record) for record in result.curve],
        "seconds": result.seconds,
        "human_qwk": human_qwk,
        "trainable_parameters": sum(int(t.numel()) for t in adapter_state(model).values()),
        **({"crossval": decided.figures} if decided else {}),
    }
    card = model_card({**adapter_config, "version": "next"}, metrics, human_qwk)
    record = save_adapter(root, adapter_config, adapter_state(model), metrics, "", make_current=not refused)
    (record.folder / "MODEL_CARD.md").write_text(card.replace("(next)", f"({record.version})"))
    if refused:
        served = (f"{existing.version} stays the served version" if existing
                  else "nothing is served for this item yet")
        raise QualityRefused(
            f"{item.item_id}: test QWK {test_qwk:.3f} on {len(item.test)} held-out answers is below the floor "
            f"{min_test_qwk:.2f} (--min-qwk), so {served}. The trained version {record.version} is kept in "
            f"{record.folder}. To serve it anyway, without retraining: add-item --item {source_item} "
            f"--accept {record.version}; or lower the floor with --min-qwk.", item.item_id, record.version)
    return record.config, True


def train_full_baseline(
    item: ItemData, out_dir: Path, config: TrainConfig, backbone_name: str = "minilm-en", force: bool = False
) -> tuple[dict[str, Any], bool]:
    """The paper's baseline: the whole backbone + classifier fine-tuned. Only metrics are kept."""
    config = replace(config, mode="full")
    backbone = resolve_backbone(backbone_name)
    fingerprint = _fingerprint(item, backbone, config)
    path = out_dir / f"{item.item_id}.json"
    if path.is_file() and not force:
        existing: dict[str, Any] = json.loads(path.read_text())
        if existing.get("fingerprint") == fingerprint:
            return existing, False
    started = time.perf_counter()
    result = run_training(item, backbone, config, f"{item.item_id} full")
    report = {
        **result.metrics,
        "item_id": item.item_id,
        "fingerprint": fingerprint,
        "train": config.as_dict(),
        "best_epoch": result.best_epoch,
        "steps": {"trained": result.steps, "kept": result.kept_steps, "minimum": config.min_steps},
        "curve": [vars(record) for record in result.curve],
        "seconds": {**result.seconds, "wall": time.perf_counter() - started},
        "decoding": {"thresholds": result.thresholds},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report, True
