"""The exporter's manifest, read once: which trunks and items exist, their versions, files and decoding rules."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ITEM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ItemSpec:
    item_id: str
    version: str
    head_format: str  # "ort-adapter" | "merged"
    path: Path
    labels: list[int]
    thresholds: list[float] | None
    review_threshold: float
    sha256: str
    nbytes: int
    model_card: dict[str, Any] = field(default_factory=dict)
    golden_texts: list[str] = field(default_factory=list)
    golden_logits: list[list[float]] = field(default_factory=list)
    backbone: str = ""  # the backbone it was trained on; it runs on that backbone's trunk only
    backbone_sha256: str = ""  # that backbone's weights when it was trained

    @property
    def key(self) -> tuple[str, str]:
        return (self.item_id, self.version)


@dataclass(frozen=True)
class BackboneFiles:
    """One backbone's trunk (and int8 variant), tokenizer and shared head graph."""

    name: str
    weights_sha256: str
    trunk_path: Path
    trunk_sha256: str
    tokenizer_path: Path
    adapter_head_path: Path | None
    int8_path: Path | None  # only where the export allowed it
    fp16_path: Path | None  # likewise; for the GPU
    max_length: int
    text_prefix: str


def backbone_entries(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Format 2 lists every backbone; format 1 has one, described by its top-level keys."""
    if "backbones" in manifest:
        entries: dict[str, dict[str, Any]] = manifest["backbones"]
        return entries
    keys = ("backbone", "trunk", "tokenizer", "adapter_head", "int8", "fp16")
    single: dict[str, Any] = {key: manifest[key] for key in keys if key in manifest}
    return {str(manifest["backbone"]["name"]): single}


def backbone_files(root: Path, entry: dict[str, Any]) -> BackboneFiles:
    head, int8, fp16 = entry.get("adapter_head"), entry.get("int8"), entry.get("fp16")
    return BackboneFiles(
        name=str(entry["backbone"]["name"]),
        weights_sha256=str(entry["backbone"]["weights_sha256"]),
        trunk_path=root / str(entry["trunk"]["file"]),
        trunk_sha256=str(entry["trunk"]["sha256"]),
        tokenizer_path=root / str(entry["tokenizer"]["file"]),
        adapter_head_path=root / str(head["file"]) if head else None,
        int8_path=root / str(int8["file"]) if int8 and int8.get("allowed") else None,
        fp16_path=root / str(fp16["file"]) if fp16 and fp16.get("allowed") else None,
        max_length=int(entry["backbone"]["max_length"]),
        text_prefix=str(entry["backbone"].get("text_prefix", "")),
    )


@dataclass(frozen=True)
class Artifacts:
    root: Path
    manifest: dict[str, Any]
    items: dict[str, ItemSpec]
    backbones: dict[str, BackboneFiles] = field(default_factory=dict)

    @property
    def trunk_path(self) -> Path:
        return self.root / str(self.manifest["trunk"]["file"])

    @property
    def int8_path(self) -> Path | None:
        int8 = self.manifest.get("int8")
        return self.root / str(int8["file"]) if int8 and int8.get("allowed") else None

    @property
    def tokenizer_path(self) -> Path:
        return self.root / str(self.manifest["tokenizer"]["file"])

    @property
    def adapter_head_path(self) -> Path | None:
        head = self.manifest.get("adapter_head")
        return self.root / str(head["file"]) if head else None

    @property
    def max_length(self) -> int:
        return int(self.manifest["backbone"]["max_length"])

    @property
    def text_prefix(self) -> str:
        return str(self.manifest["backbone"].get("text_prefix", ""))


def item_spec(root: Path, item_id: str, entry: dict[str, Any], manifest: dict[str, Any] | None = None) -> ItemSpec:
    """manifest: only needed for format-1 entries, which do not name their backbone."""
    if not ITEM_ID.match(item_id):
        raise ValueError(f"manifest item id {item_id!r} is not a slug")
    return ItemSpec(
        item_id=item_id,
        version=str(entry["version"]),
        head_format=str(entry["format"]),
        path=root / str(entry["file"]),
        labels=[int(label) for label in entry["labels"]],
        thresholds=entry.get("thresholds"),
        review_threshold=float(entry.get("review_threshold", 0.6)),
        sha256=str(entry["sha256"]),
        nbytes=int(entry["bytes"]),
        model_card=dict(entry.get("model_card", {})),
        golden_texts=list(entry.get("golden", {}).get("texts", [])),
        golden_logits=list(entry.get("golden", {}).get("logits", [])),
        backbone=str(entry.get("backbone") or (manifest or {}).get("backbone", {}).get("name", "")),
        backbone_sha256=str(entry.get("backbone_sha256")
                            or (manifest or {}).get("backbone", {}).get("weights_sha256", "")),
    )


def load_artifacts(root: Path) -> Artifacts:
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no export manifest at {path}; run `python -m export` (or `make export`)")
    manifest: dict[str, Any] = json.loads(path.read_text())
    items = {item_id: item_spec(root, item_id, entry, manifest) for item_id, entry in manifest["items"].items()}
    backbones = {name: backbone_files(root, entry) for name, entry in backbone_entries(manifest).items()}
    return Artifacts(root, manifest, items, backbones)
