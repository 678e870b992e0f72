"""The exporter's manifest, read once: which items exist, their versions, files and decoding rules."""

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

    @property
    def key(self) -> tuple[str, str]:
        return (self.item_id, self.version)


@dataclass(frozen=True)
class Artifacts:
    root: Path
    manifest: dict[str, Any]
    items: dict[str, ItemSpec]

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


def item_spec(root: Path, item_id: str, entry: dict[str, Any]) -> ItemSpec:
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
    )


def load_artifacts(root: Path) -> Artifacts:
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no export manifest at {path}; run `python -m export` (or `make export`)")
    manifest: dict[str, Any] = json.loads(path.read_text())
    items = {item_id: item_spec(root, item_id, entry) for item_id, entry in manifest["items"].items()}
    return Artifacts(root, manifest, items)
