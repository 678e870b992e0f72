"""A domain-adapted backbone on set-up: the packaged weights + the committed low-rank update, merged into an
HF folder under build/backbones/<name>/ (not committed: 90 MB), checked by hash.

What is checked is the inputs: the packaged weights' SHA-256 and the committed update's SHA-256 must be
the ones recorded when the update was trained. The merged file's own bytes may differ in the last bit between
CPUs (matrix products), so its identity is the fingerprint of its inputs, which every adapter trained on it
records as its backbone's weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from core.fingerprints import file_sha256, fingerprint
from training.encoder_layout import LAYOUTS

DELTA_FILE = "delta.safetensors"
REPORT_FILE = "domain.json"
STAMP_FILE = "merged-from.json"


def merged_identity(base_sha256: str, delta_sha256: str) -> str:
    """Not a hash of the merged file (its bytes vary by CPU): its inputs' fingerprint, repeated to the 64 hex
    characters of the SHA-256 other backbones record. Adapters trained on the merged backbone record this
    value, so changing its form would make every one of them stale."""
    return fingerprint({"base": base_sha256, "delta": delta_sha256}) * 4


def merge_delta(base_folder: Path, base_sha256: str, delta_folder: Path, target: Path) -> str:
    """Build (or reuse) target/ = base + delta; returns the merged backbone's identity."""
    report = json.loads((delta_folder / REPORT_FILE).read_text())
    delta_sha256 = file_sha256(delta_folder / DELTA_FILE)
    if report["base"]["weights_sha256"] != base_sha256:
        raise ValueError(f"{delta_folder.name} was trained on base weights {report['base']['weights_sha256'][:12]}…, "
                         f"the installed package has {base_sha256[:12]}…")
    if report.get("delta_sha256") not in (None, delta_sha256):
        raise ValueError(f"{delta_folder / DELTA_FILE} is not the file its {REPORT_FILE} describes")
    identity = merged_identity(base_sha256, delta_sha256)
    stamp = target / STAMP_FILE
    if stamp.is_file() and json.loads(stamp.read_text()).get("identity") == identity:
        return identity
    target.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(base_folder / "model.safetensors"))
    prefix = "bert." if any(key.startswith("bert.") for key in weights) else ""
    delta = load_file(str(delta_folder / DELTA_FILE))
    for key, lora_a in delta.items():
        if not key.endswith(".lora_a"):
            continue
        _, layer, short, _ = key.split(".")
        lora_b = delta[key.replace("lora_a", "lora_b")]  # saved with its alpha / rank scale applied
        name = f"{prefix}encoder.layer.{layer}.{LAYOUTS['bert'].linears[short]}.weight"
        weights[name] = (weights[name].double() + lora_b.double() @ lora_a.double()).float().contiguous()
    save_file(weights, str(target / "model.safetensors"))
    for item in base_folder.iterdir():
        if item.name != "model.safetensors" and item.is_file():
            shutil.copyfile(item, target / item.name)
    stamp.write_text(json.dumps({"identity": identity, "base_sha256": base_sha256, "delta_sha256": delta_sha256}))
    return identity
