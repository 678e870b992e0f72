"""Artifacts for N bench items, built once under build/bench/ and reused (every step skips what exists).

- engine/N<n>/: a manifest listing N items next to links to the exported trunk, tokenizer and shared head;
  synthetic items get their own .onnx_adapter (a real item's LoRA and classifier, each weight times
  1 + 5 % noise), so the engine loads N distinct files.
- naive/<item>.safetensors: the same per-item tensors under peft's parameter names (what a user of
  transformers + peft would keep on disk).
- full/<item>.onnx: one complete model per item (bench.full_models).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from bench.full_models import make_synthetic
from bench.workload import bench_item_ids, source_item
from core.grouped_head import read_adapter_tensors
from core.manifest import single_view

# Our module names inside a BERT layer -> the names transformers gives the same linears.
HF_MODULES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "inter": "intermediate.dense",
    "out": "output.dense",
}
PERTURBATION = 0.05


def adapter_tensors(path: Path) -> dict[str, NDArray[np.float32]]:
    tensors = read_adapter_tensors(path)
    for name, value in tensors.items():
        if not np.isfinite(value).all():
            raise ValueError(f"{path}: parameter {name} is not finite")
    return tensors


def perturbed(tensors: dict[str, NDArray[np.float32]], seed: int) -> dict[str, NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    return {name: (value * (1 + PERTURBATION * rng.standard_normal(value.shape))).astype(np.float32)
            for name, value in tensors.items()}


class BenchArtifacts:
    def __init__(self, source: Path, root: Path) -> None:
        self.source = source  # the exporter's output for the real items
        self.root = root
        manifest_bytes = (source / "manifest.json").read_bytes()
        self.manifest: dict[str, Any] = json.loads(manifest_bytes)
        # The bench compares single heads (engine vs full models vs peft): ensemble items by their first
        # member, as SCORER_ENSEMBLES=false serves them. Ensembles are costed by bench.qwk_over_http.
        self.manifest = single_view(self.manifest)
        self.split_layer = int(self.manifest["backbone"]["split_layer"])
        # Everything here derives from that export: a new export (retrained adapters) rebuilds it all.
        stamp = root / "source.sha256"
        digest = hashlib.sha256(manifest_bytes).hexdigest()
        if not stamp.is_file() or stamp.read_text() != digest:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            stamp.write_text(digest)

    @property
    def pool(self) -> Path:
        return self.root / "pool"

    def _real_tensors(self, item: str) -> dict[str, NDArray[np.float32]]:
        entry = self.manifest["items"][item]
        return adapter_tensors(self.source / entry["file"])

    def item_tensors(self, item: str) -> dict[str, NDArray[np.float32]]:
        real = self._real_tensors(source_item(item))
        return real if item == source_item(item) else perturbed(real, int(item.removeprefix("syn-")))

    def engine_dir(self, count: int) -> Path:
        """An exporter-shaped folder serving `count` items."""
        folder = self.root / "engine" / f"N{count}"
        manifest_path = folder / "manifest.json"
        if manifest_path.exists():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(self.source):
            if name not in ("manifest.json", "items") and not (folder / name).exists():
                (folder / name).symlink_to((self.source / name).resolve())
        manifest = copy.deepcopy(self.manifest)
        manifest.pop("history", None)
        manifest["items"] = {item: self._engine_entry(item) for item in bench_item_ids(count)}
        manifest_path.write_text(json.dumps(manifest))
        return folder

    def _engine_entry(self, item: str) -> dict[str, Any]:
        real = source_item(item)
        entry: dict[str, Any] = copy.deepcopy(self.manifest["items"][real])
        if item == real:
            entry["file"] = str((self.source / entry["file"]).resolve())
            return entry
        path = self.pool / "adapters" / f"{item}.onnx_adapter"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            adapter = ort.AdapterFormat()
            adapter.set_parameters({name: ort.OrtValue.ortvalue_from_numpy(value)
                                    for name, value in self.item_tensors(item).items()})
            adapter.export_adapter(str(path))
        entry.update(file=str(path.resolve()), golden={"texts": [], "logits": []},
                     sha256="synthetic", bytes=path.stat().st_size)
        return entry

    def naive_file(self, item: str) -> Path:
        """The item's LoRA under peft's names plus its classifier, as safetensors."""
        path = self.pool / "naive" / f"{item}.safetensors"
        if path.exists():
            return path
        from safetensors.numpy import save_file  # a training package: `make gpu-check`'s venv has none

        path.parent.mkdir(parents=True, exist_ok=True)
        renamed: dict[str, NDArray[np.float32]] = {}
        for name, value in self.item_tensors(item).items():
            if name.startswith("classifier."):
                renamed[name] = value
                continue
            _, layer, module, part = name.split(".")  # layers.<head layer>.<module>.lora_a|lora_b
            absolute = self.split_layer + int(layer)
            kind = "lora_A" if part == "lora_a" else "lora_B"
            renamed[f"base_model.model.encoder.layer.{absolute}.{HF_MODULES[module]}.{kind}.weight"] = value
        save_file(renamed, str(path))
        return path

    def full_file(self, item: str) -> Path:
        folder = self.pool / "full"
        if not all((folder / f"{real}.onnx").exists() for real in {source_item(item)}):
            # torch lives only in this child: ORT timings are not taken next to a torch runtime.
            subprocess.run([sys.executable, "-m", "bench.full_models", str(folder)], check=True)
        return folder / f"{item}.onnx" if item == source_item(item) else make_synthetic(folder, item)
