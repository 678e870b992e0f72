"""What the accuracy report is made of: each item's committed adapter metrics, its adapters on other
backbones, its full fine-tuning baseline and the human agreement."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.asap import HUMAN_QWK
from training.backbones import DEFAULT_BACKBONE

Json = dict[str, Any]
DASH = "–"


def fmt(value: float | None, digits: int = 3) -> str:
    return DASH if value is None or math.isnan(value) else f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


@dataclass(frozen=True)
class ItemResult:
    item_id: str
    low: int
    high: int
    metrics: Json
    config: Json
    full: Json | None
    human: float | None
    # The same item's adapters on other backbones: backbone name -> (metrics, config)
    others: dict[str, tuple[Json, Json]]

    def other_qwk(self, backbone: str, split: str = "test") -> float | None:
        other = self.others.get(backbone)
        return float(other[0][split]["qwk"]) if other else None


# What a member tag means (training CLI: --raters both stores "r2"; --member-tag names others, e.g. a seed).
TAG_NOTES = {"r2": "trained on both raters' scores (every training answer twice)"}


def kind_note(kind: str) -> str:
    """How the report names a column kind: "e5-multilingual" or "minilm-en/r2"."""
    backbone, _, tag = kind.partition("/")
    if not tag:
        return f"the same item's adapter on {backbone}"
    if tag not in TAG_NOTES and tag[1:].isdigit() and tag.startswith("s"):  # --seed N --member-tag sN
        return f"the same item's {backbone} adapter trained with seed {tag[1:]}"
    return f"the same item's {backbone} adapter, {TAG_NOTES.get(tag, f'tagged {tag}')}"


def other_backbones(items: list[ItemResult]) -> list[str]:
    return sorted({name for item in items for name in item.others})


def read_json(path: Path) -> Json:
    data: Json = json.loads(path.read_text())
    return data


def column_kind(entry: Json, config: Json) -> str:
    """"minilm-en" for an item's own adapter on the default backbone; "e5-multilingual", "minilm-en/r2", ..."""
    tag = config.get("member_tag")
    return str(entry.get("backbone", DEFAULT_BACKBONE)) + (f"/{tag}" if tag else "")


def load_items(adapters: Path, full_dir: Path) -> list[ItemResult]:
    manifest = {item_id: entry for item_id, entry in read_json(adapters / "manifest.json")["items"].items()
                if entry.get("current")}  # refused candidates are not reported
    # Rows are the default backbone's own adapters; an item's other adapters (other backbones, or extra members
    # such as the both-raters one, "minilm-en/r2") become columns.
    configs = {item_id: read_json(adapters / item_id / entry["current"] / "config.json")
               for item_id, entry in manifest.items()}
    others: dict[str, dict[str, tuple[Json, Json]]] = {}
    for item_id, entry in manifest.items():
        kind = column_kind(entry, configs[item_id])
        if kind != DEFAULT_BACKBONE:
            metrics = read_json(adapters / item_id / entry["current"] / "metrics.json")
            source = str(configs[item_id].get("source_item", item_id))
            others.setdefault(source, {})[kind] = (metrics, configs[item_id])
    results = []
    for item_id in sorted(manifest):
        entry = manifest[item_id]
        if column_kind(entry, configs[item_id]) != DEFAULT_BACKBONE:
            continue
        folder = adapters / item_id / entry["current"]
        metrics = read_json(folder / "metrics.json")
        full_path = full_dir / f"{item_id}.json"
        human = metrics.get("human_qwk")
        results.append(ItemResult(
            item_id=item_id, low=entry["score_range"]["low"], high=entry["score_range"]["high"],
            metrics=metrics, config=configs[item_id],
            full=read_json(full_path) if full_path.is_file() else None,
            human=HUMAN_QWK.get(item_id) if human is None else float(human),
            others=others.get(item_id, {}),
        ))
    return results
