"""Per-item adapter artifacts: adapters/<item>/<version>/ + adapters/manifest.json (items, versions)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from training.encoder import TARGET_PRESETS, EncoderConfig, ScoringModel, attach_lora, build_model, load_adapter_state

ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
MANIFEST_FILE = "manifest.json"


def data_fingerprint(splits: dict[str, list[tuple[str, int]]]) -> str:
    digest = hashlib.sha256()
    for name in sorted(splits):
        for text, score in splits[name]:
            digest.update(f"{name}\x1f{score}\x1f{text}\x1e".encode())
    return digest.hexdigest()[:16]


@dataclass
class AdapterRecord:
    folder: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def item_id(self) -> str:
        return str(self.config["item_id"])

    @property
    def version(self) -> str:
        return str(self.config["version"])

    @property
    def source_item(self) -> str:
        """The data set item this adapter was trained on (asap-01-e5 -> asap-01): the members of one
        ensemble share it, and with it their validation, test and golden answers."""
        return str(self.config.get("source_item", self.item_id))

    def state(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.folder / ADAPTER_FILE))


def adapter_model(
    record: AdapterRecord, backbone_path: Path, weights: tuple[EncoderConfig, dict[str, torch.Tensor]] | None = None
) -> ScoringModel:
    """The backbone with this record's LoRA and classifier attached, in eval mode (unmerged)."""
    config = record.config
    model = build_model(backbone_path, config["split_layer"], len(config["labels"]), backbone=weights)
    train = config["train"]
    attach_lora(model, TARGET_PRESETS[train["targets"]], train["rank"], train["alpha"])
    load_adapter_state(model, record.state())
    return model.eval()


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_FILE
    if not path.is_file():
        return {"format": 1, "items": {}}
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(root / MANIFEST_FILE)  # atomic: readers never see half a manifest


def current_record(root: Path, item_id: str) -> AdapterRecord | None:
    entry = read_manifest(root)["items"].get(item_id)
    return load_record(root / item_id / entry["current"]) if entry and entry.get("current") else None


def load_record(folder: Path) -> AdapterRecord:
    for name in (ADAPTER_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"adapter folder {folder} has no {name}")
    return AdapterRecord(
        folder,
        json.loads((folder / CONFIG_FILE).read_text()),
        json.loads((folder / METRICS_FILE).read_text()) if (folder / METRICS_FILE).is_file() else {},
    )


def save_adapter(
    root: Path, config: dict[str, Any], state: dict[str, torch.Tensor], metrics: dict[str, Any], card: str,
    make_current: bool = True,
) -> AdapterRecord:
    """Write a new version (v1, v2, ...) of the item and make it current; older versions stay.

    make_current=False keeps it as a candidate (a version refused by the quality floor): listed, not served,
    and `accept_version` can make it current later without retraining."""
    item_id = config["item_id"]
    manifest = read_manifest(root)
    entry = manifest["items"].setdefault(item_id, {"versions": [], "current": None})
    version = f"v{len(entry['versions']) + 1}"
    folder = root / item_id / version
    folder.mkdir(parents=True, exist_ok=False)
    config = {**config, "version": version, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    save_file(state, str(folder / ADAPTER_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (folder / CARD_FILE).write_text(card)
    entry["versions"].append(version)
    if make_current:
        _make_current(entry, version, config, metrics)
    write_manifest(root, manifest)
    return AdapterRecord(folder, config, metrics)


def _make_current(entry: dict[str, Any], version: str, config: dict[str, Any], metrics: dict[str, Any]) -> None:
    entry["current"] = version
    entry["score_range"] = config["score_range"]
    entry["backbone"] = config["backbone"]["name"]
    entry["test_qwk"] = metrics.get("test", {}).get("qwk")


def accept_version(root: Path, item_id: str, version: str) -> AdapterRecord:
    """Make an existing version (e.g. a refused candidate) the item's current one; nothing is retrained."""
    manifest = read_manifest(root)
    entry = manifest["items"].get(item_id)
    if entry is None or version not in entry["versions"]:
        known = ", ".join(entry["versions"]) if entry else "none"
        raise FileNotFoundError(f"{item_id} has no version {version!r} in {root} (versions: {known})")
    record = load_record(root / item_id / version)
    _make_current(entry, version, record.config, record.metrics)
    write_manifest(root, manifest)
    return record


def current_versions(root: Path) -> dict[str, str | None]:
    """Adapter key -> its current version (None: a key with only candidates)."""
    return {key: entry.get("current") for key, entry in read_manifest(root)["items"].items()}


def restore_current(root: Path, item_id: str, version: str | None) -> None:
    """Serve `version` of the key again (None: nothing, as before its first version); the versions trained
    since stay as candidates that `accept_version` can serve later."""
    manifest = read_manifest(root)
    entry = manifest["items"].get(item_id)
    if entry is None:
        return
    if version is None:
        for name in ("current", "score_range", "backbone", "test_qwk"):
            entry.pop(name, None)
        entry["current"] = None
    else:
        record = load_record(root / item_id / version)
        _make_current(entry, version, record.config, record.metrics)
    write_manifest(root, manifest)


def model_card(config: dict[str, Any], metrics: dict[str, Any], human_qwk: float | None) -> str:
    sizes = metrics.get("sizes", {})
    ceiling = f"{human_qwk:.3f}" if human_qwk is not None else "not known"
    low, high = config["score_range"]["low"], config["score_range"]["high"]
    return "\n".join([
        f"# {config['item_id']} ({config['version']})",
        "",
        f"- Score range: {low}–{high}",
        f"- Backbone: {config['backbone']['name']} ({config['backbone']['package']} "
        f"{config['backbone']['package_version']}), frozen; LoRA r={config['train']['rank']}, "
        f"alpha={config['train']['alpha']} on {config['train']['targets']} of layers "
        f"{config['split_layer']}..{config['num_layers'] - 1}",
        f"- Data: {sizes.get('train', '?')} train / {sizes.get('validation', '?')} validation / "
        f"{sizes.get('test', '?')} test answers",
        *_quality(metrics, ceiling),
        f"- Training: {_steps(metrics.get('steps', {}), config['train'])}; class weights "
        f"{'inverse-frequency' if config['train'].get('class_weighted') else 'none'}; decoding rule "
        f"{config['train'].get('decoding', 'auto')}",
        f"- Decoding: {_decoding(config['decoding']['thresholds'])}",
        f"- Needs review below confidence {config['review_threshold']:.2f}",
        "",
    ])


def _quality(metrics: dict[str, Any], ceiling: str) -> list[str]:
    """The held-out figures: the test split's, or with a cross-validated choice the out-of-fold estimate (the
    served model was then trained on every answer, so its own test figures would be in-sample)."""
    test, crossval = metrics.get("test", {}), metrics.get("crossval")
    if crossval:
        low, high = crossval["interval"]
        return [f"- Cross-validated QWK {crossval['qwk']:.3f} (95 % {low:.3f}–{high:.3f}; {crossval['folds']} folds "
                f"over {crossval['answers']} answers; human rater agreement: {ceiling}), served as "
                f"{crossval['chosen']}; trained on every answer afterwards, so no held-out test figure",
                "- Configurations compared out of fold: " + ", ".join(
                    f"{label} {qwk:.3f}" for label, qwk in crossval["configurations"].items())]
    return [f"- Test QWK {test.get('qwk', float('nan')):.3f} (human rater agreement: {ceiling}); accuracy "
            f"{test.get('accuracy', float('nan')):.3f}; macro-F1 {test.get('macro_f1', float('nan')):.3f}"]


def _steps(steps: dict[str, Any], train: dict[str, Any]) -> str:
    if not steps:
        return "steps not recorded"
    return (f"{steps['trained']} optimiser steps (minimum {steps['minimum']}) of {train.get('batch_size', '?')} "
            f"answers in {_precision(str(train.get('step_precision', 'auto')))}, the kept epoch after "
            f"{steps['kept']}")


def _precision(step_precision: str) -> str:
    """What the steps ran in ("auto" is recorded only where the recipe left it unresolved: fp32)."""
    return "bf16 autocast steps, fp32 weights" if step_precision == "bf16" else "fp32"


def _decoding(thresholds: list[float] | None) -> str:
    return f"expected score cut at {[round(t, 3) for t in thresholds]}" if thresholds else "argmax"
