"""`python -m training ensemble`: build, choose and write one item's ensemble into adapters/ensembles/<item>/.

ensemble.json names the chosen members (adapters by key and version, the lexical member by file and hash),
their weights, the thresholds and review threshold of the combination, and every evaluated subset with the
validation figures that chose it and its test figures (reported only). The exporter turns it into one
served item; the item's own adapter (the first member) stays what the fast single-head mode serves."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from core.ensemble import combine
from core.fingerprints import fingerprint
from training.artifacts import data_fingerprint
from training.choice_uncertainty import encode_labels
from training.data import ItemData
from training.ensemble import Choice, FixedDecoding, choose
from training.ensemble_members import Candidate, adapter_candidate, item_adapters, lexical_candidate
from training.lexical import CHAR_FEATURES, CHAR_NGRAMS, INVERSE_REGULARISATION, WORD_NGRAMS
from training.pipeline import review_threshold

ENSEMBLES = "ensembles"  # under the adapters folder
ENSEMBLE_FILE = "ensemble.json"
LEXICAL_FILE = "lexical.onnx"
LEXICAL_BYTES = "lexical_onnx"  # the built lexical graph, carried in memory beside ensemble.json, never in it
RECIPE = {"combine": "mean_probabilities", "weights": "equal", "selection": "5-fold cross-fitted validation QWK",
          "lexical": {"word": WORD_NGRAMS, "char": CHAR_NGRAMS, "char_features": CHAR_FEATURES,
                      "C": INVERSE_REGULARISATION}}


def ensemble_folder(adapters: Path, item_id: str) -> Path:
    return adapters / ENSEMBLES / item_id


def read_ensemble(adapters: Path, item_id: str) -> dict[str, Any] | None:
    path = ensemble_folder(adapters, item_id) / ENSEMBLE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def signature(choice: Choice) -> str:
    """What kind of ensemble it is, the same for every item: "minilm-en+e5-multilingual+lexical"."""
    return "+".join(member.label for member in choice.members)


def _summary(choice: Choice, truth: list[int], lexical_sha256: str) -> dict[str, Any]:
    mixed_validation = combine([member.probabilities["validation"] for member in choice.members],
                               [1.0] * len(choice.members))
    return {"members": choice.names, "signature": signature(choice),
            "entries": [_member_entry(member, lexical_sha256) for member in choice.members],
            "crossfit_validation_qwk": round(choice.crossfit_qwk, 4),
            "validation_qwk": round(choice.validation_qwk, 4), "test": choice.test,
            "thresholds": choice.thresholds,
            "review_threshold": review_threshold(mixed_validation, truth, choice.thresholds),
            "trunk_runs": choice.trunk_runs, "head_runs": choice.head_runs,
            "crossfit_predicted": encode_labels(choice.crossfit_predicted)}


def apply_choice(ensemble: dict[str, Any], wanted: str | None = None) -> dict[str, Any]:
    """Serve the candidate of kind `wanted` (None: the item's own best by cross-fitted validation QWK)."""
    candidates = ensemble["candidates"]
    chosen = next((c for c in candidates if c["signature"] == wanted), None) if wanted else None
    if chosen is None:
        chosen = max(candidates, key=lambda c: (c["crossfit_validation_qwk"], -len(c["members"])))
    version = "ens-" + fingerprint({"built": ensemble["fingerprint"], "members": chosen["members"]})[:8]
    return {**ensemble, "version": version, "members": chosen["entries"],
            "decoding": {"thresholds": chosen["thresholds"]}, "review_threshold": chosen["review_threshold"],
            "chosen": chosen, "selection": wanted or "per item"}


def pooled_choice(ensembles: list[dict[str, Any]]) -> tuple[str, dict[str, float]]:
    """The kind of ensemble with the best mean cross-fitted validation QWK over the items that all offer it.

    One choice for all items rather than one per item: per item, ~170-400 validation answers pick among 4
    subsets mostly by noise (on ASAP the per-item picks lost 0.008 mean test QWK against the pooled pick)."""
    offered: dict[str, list[float]] = {}
    for ensemble in ensembles:
        for candidate in ensemble["candidates"]:
            offered.setdefault(candidate["signature"], []).append(candidate["crossfit_validation_qwk"])
    means = {kind: sum(values) / len(values) for kind, values in offered.items() if len(values) == len(ensembles)}
    return max(means, key=lambda kind: means[kind]), means


def save_probabilities(path: Path, candidates: list[Candidate], truth: dict[str, list[int]]) -> None:
    """Arrays "<split>_<n>" (the n-th entry of `labels`) and "<split>_truth"; labels[0] is the item's own
    adapter."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {f"{split}_{number}": member.probabilities[split]
                              for number, member in enumerate(candidates) for split in truth}
    arrays.update({f"{split}_truth": np.asarray(labels) for split, labels in truth.items()})
    arrays["labels"] = np.asarray([member.label for member in candidates])
    np.savez_compressed(path, **arrays)


def write_ensemble(adapters: Path, ensemble: dict[str, Any]) -> None:
    """ensemble.json (and the lexical member's graph, where the build made one) in the ensemble's folder."""
    folder = ensemble_folder(adapters, ensemble["item_id"])
    folder.mkdir(parents=True, exist_ok=True)
    if ensemble.get(LEXICAL_BYTES):
        (folder / LEXICAL_FILE).write_bytes(ensemble[LEXICAL_BYTES])
    stored = {name: value for name, value in ensemble.items() if name != LEXICAL_BYTES}
    (folder / ENSEMBLE_FILE).write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")


def _member_entry(member: Candidate, lexical_sha256: str) -> dict[str, Any]:
    if member.record is not None:
        return {"kind": "adapter", "adapter": member.record.item_id, "version": member.record.version,
                "backbone": member.backbone, "weight": 1.0, **({"tag": member.tag} if member.tag else {})}
    return {"kind": "lexical", "file": LEXICAL_FILE, "sha256": lexical_sha256, "weight": 1.0}


def build_ensemble(item: ItemData, adapters: Path, max_trunks: int, lexical: bool = True,
                   force: bool = False, backbone_folder: str | None = None,
                   refit_lexical: bool = False, keep_probabilities: Path | None = None,
                   only: set[str] | None = None, primary_key: str | None = None,
                   write: bool = True, fixed: FixedDecoding | None = None) -> tuple[dict[str, Any], bool]:
    """(the item's ensemble.json, whether it was built now): skipped when its members and recipe are the
    ones it was built from. The candidates are evaluated and kept; `apply_choice` decides what is served.
    refit_lexical: the lexical member served is refitted on training + validation answers (small items).
    keep_probabilities: a folder for <item>.npz, every candidate's validation and test probabilities (for
    studies of other combination rules: studies/weights_study.py), written when the ensemble is built.
    only: the adapter keys that may be members (None: every current adapter of the item).
    primary_key: the adapter key the ensemble is served under and its first member (default: the item's own, the
    default backbone's): an E5 item's ensemble is `x-e5`'s, and never replaces `x`'s.
    write: False keeps it in memory (add-item writes it only once the floor accepts what it serves).
    fixed: every subset decoded with these thresholds (add-item --select cv chose them on every answer)."""
    records = [record for record in item_adapters(adapters, item.item_id) if only is None or record.item_id in only]
    if primary_key is not None:
        records.sort(key=lambda record: record.item_id != primary_key)
    if not records or (primary_key is not None and records[0].item_id != primary_key):
        raise FileNotFoundError(f"{primary_key or item.item_id} has no trained adapter in {adapters}; train it first")
    ensemble_id = records[0].item_id
    key = fingerprint({"data": data_fingerprint(item.splits()), "recipe": RECIPE, "lexical": lexical,
                       **({"refit_lexical": True} if refit_lexical else {}),
                       **({"fixed_decoding": fixed.thresholds} if fixed is not None else {}),
                       "max_trunks": max_trunks, "members": [[r.item_id, r.version, r.config.get("fingerprint")]
                                                             for r in records]})
    existing = read_ensemble(adapters, ensemble_id)
    if existing is not None and existing.get("fingerprint") == key and not force:
        return existing, False
    started = time.perf_counter()
    candidates = [adapter_candidate(record, item, backbone_folder) for record in records]
    skipped = ""
    if lexical:
        try:
            candidates.append(lexical_candidate(item, refit=refit_lexical))
        except ValueError as exc:  # one score only in the training answers: the adapter serves alone
            skipped = str(exc)
    low = item.score_range.low
    truth = {split: [score - low for _, score in getattr(item, split)] for split in ("validation", "test")}
    _, evaluated = choose(candidates, truth, max_trunks, fixed=fixed)
    if keep_probabilities is not None:
        save_probabilities(keep_probabilities / f"{item.item_id}.npz", candidates, truth)
    lexical_onnx = next((member.onnx for member in candidates if member.kind == "lexical"), b"")
    lexical_sha256 = hashlib.sha256(lexical_onnx).hexdigest() if lexical_onnx else ""
    primary = records[0]
    ensemble = apply_choice({
        "item_id": ensemble_id, "source_item": item.item_id, "fingerprint": key,
        "labels": item.score_range.labels, "score_range": {"low": low, "high": item.score_range.high},
        "combine": "mean_probabilities", "fast": {"adapter": primary.item_id, "version": primary.version},
        "candidates": [_summary(choice, truth["validation"], lexical_sha256) for choice in evaluated],
        "recipe": RECIPE, "max_trunks": max_trunks, "lexical_skipped": skipped,
        "lexical_fitted_on": "train+validation" if refit_lexical else "train",
        "sizes": {name: len(rows) for name, rows in item.splits().items()},
        "validation_truth": encode_labels(truth["validation"]),  # what the choice's bootstrap resamples
        "seconds": {"members": {member.name: round(member.seconds, 2) for member in candidates},
                    "total": round(time.perf_counter() - started, 2)},
    })
    ensemble[LEXICAL_BYTES] = lexical_onnx  # written beside ensemble.json (kept whether chosen or not: a
    # pooled choice may pick it later), never into it
    if write:
        write_ensemble(adapters, ensemble)
    return ensemble, True
