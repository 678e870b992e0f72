"""How much does the choice of decoding matter? Committed adapters, five decoders, test QWK per item.

`python -m studies.decoding_study` -> reports/decoding.json (the report prints it). The adapters are not
retrained: their validation and test probabilities are computed once, then decoded five ways:
the committed validation-tuned thresholds, argmax, fixed cuts at k + 0.5 on the expected score, thresholds
bagged over bootstrap resamples of validation (median cut), and a per-item pick among argmax / tuned /
bagged by 5-fold cross-validation on the validation split. Only the last three are candidates that could
replace the shipped rule; the test column is what they would have scored, so use it to compare rules
across items, not to pick one per item.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from core.decoding import decode
from training.artifacts import AdapterRecord, adapter_model, current_record
from training.asap import ASAP_ITEMS, load_asap_item
from training.backbones import resolve_backbone
from training.cli import ADAPTERS, REPORTS
from training.decoding import tune_thresholds
from training.encoder import load_backbone_weights
from training.metrics import quadratic_weighted_kappa
from training.pipeline import encode_item
from training.trainer import FeatureSource, predict_proba

Probabilities = NDArray[np.float64]
Labels = NDArray[np.int64]
CANDIDATES = ("argmax", "tuned", "bagged")


def _qwk(truth: Labels, predicted: NDArray[np.int64], classes: int) -> float:
    return quadratic_weighted_kappa(list(truth), list(predicted), list(range(classes)))


def bagged_thresholds(probs: Probabilities, truth: Labels, rng: np.random.Generator, resamples: int) -> list[float]:
    """Median of the cut points tuned on bootstrap resamples: less fitted to a few borderline answers."""
    cuts = []
    for _ in range(resamples):
        rows = rng.integers(0, len(truth), len(truth))
        cuts.append(tune_thresholds(probs[rows], list(truth[rows]))[0])
    return [float(cut) for cut in np.median(np.asarray(cuts), axis=0)]


def cross_validated_qwk(
    probs: Probabilities, truth: Labels, rng: np.random.Generator, folds: int = 5, resamples: int = 15
) -> dict[str, float]:
    """Out-of-fold QWK on validation of each candidate rule (the rule is refitted on the other folds)."""
    rules: dict[str, Callable[[Probabilities, Labels], list[float] | None]] = {
        "argmax": lambda p, y: None,
        "tuned": lambda p, y: tune_thresholds(p, list(y))[0],
        "bagged": lambda p, y: bagged_thresholds(p, y, rng, resamples),
    }
    parts = np.array_split(rng.permutation(len(truth)), folds)
    predicted = {name: np.zeros(len(truth), dtype=np.int64) for name in rules}
    for fold, held_out in enumerate(parts):
        fit = np.concatenate([part for other, part in enumerate(parts) if other != fold])
        for name, rule in rules.items():
            predicted[name][held_out] = decode(probs[held_out], rule(probs[fit], truth[fit]))
    return {name: _qwk(truth, predicted[name], probs.shape[1]) for name in rules}


def compare_decoders(
    val: tuple[Probabilities, Labels], test: tuple[Probabilities, Labels], tuned: list[float] | None, seed: int = 0
) -> dict[str, object]:
    """Test QWK of each decoder for one item, and which candidate cross-validation on validation picks."""
    rng = np.random.default_rng(seed)
    classes = test[0].shape[1]
    cuts: dict[str, list[float] | None] = {
        "tuned": tuned, "argmax": None, "fixed": [k + 0.5 for k in range(classes - 1)],
        "bagged": bagged_thresholds(*val, rng, resamples=30),
    }
    scores = {name: _qwk(test[1], decode(test[0], rule), classes) for name, rule in cuts.items()}
    validation_cv = cross_validated_qwk(*val, rng)
    pick = max(CANDIDATES, key=lambda name: validation_cv[name])
    return {"test_qwk": {**scores, "cv-pick": scores[pick]}, "cv_pick": pick, "validation_cv_qwk": validation_cv}


def _probabilities(record: AdapterRecord) -> dict[str, tuple[Probabilities, Labels]]:
    backbone = resolve_backbone(record.config["backbone"]["name"])
    model = adapter_model(record, backbone.path, load_backbone_weights(backbone.path))
    data = encode_item(load_asap_item(record.source_item), backbone)
    return {split: (predict_proba(model, FeatureSource(model, data[split][0], True, 32), 32),
                    np.asarray(data[split][1], dtype=np.int64)) for split in ("validation", "test")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.decoding_study", description=__doc__)
    parser.add_argument("--items", nargs="+", default=ASAP_ITEMS, help="adapter keys (asap-01, asap-01-e5, ...)")
    parser.add_argument("--adapters", type=Path, default=ADAPTERS)
    parser.add_argument("--out", type=Path, default=REPORTS / "decoding.json")
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    for item_id in tqdm(args.items, desc="items", unit="item"):
        record = current_record(args.adapters, item_id)
        if record is None:
            raise SystemExit(f"{item_id}: no adapter in {args.adapters}")
        splits = _probabilities(record)
        results[item_id] = compare_decoders(splits["validation"], splits["test"],
                                            record.config["decoding"]["thresholds"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
