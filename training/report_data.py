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

    def other_qwk(self, backbone: str) -> float | None:
        other = self.others.get(backbone)
        return float(other[0]["test"]["qwk"]) if other else None


def other_backbones(items: list[ItemResult]) -> list[str]:
    return sorted({name for item in items for name in item.others})


def read_json(path: Path) -> Json:
    data: Json = json.loads(path.read_text())
    return data


def load_items(adapters: Path, full_dir: Path) -> list[ItemResult]:
    manifest = {item_id: entry for item_id, entry in read_json(adapters / "manifest.json")["items"].items()
                if entry.get("current")}  # refused candidates are not reported
    # Rows are the default backbone's items; an item's adapters on other backbones become columns.
    others: dict[str, dict[str, tuple[Json, Json]]] = {}
    for item_id, entry in manifest.items():
        if entry.get("backbone", DEFAULT_BACKBONE) != DEFAULT_BACKBONE:
            folder = adapters / item_id / entry["current"]
            config = read_json(folder / "config.json")
            source = str(config.get("source_item", item_id))
            others.setdefault(source, {})[entry["backbone"]] = (read_json(folder / "metrics.json"), config)
    results = []
    for item_id in sorted(manifest):
        entry = manifest[item_id]
        if entry.get("backbone", DEFAULT_BACKBONE) != DEFAULT_BACKBONE:
            continue
        folder = adapters / item_id / entry["current"]
        metrics = read_json(folder / "metrics.json")
        full_path = full_dir / f"{item_id}.json"
        human = metrics.get("human_qwk")
        results.append(ItemResult(
            item_id=item_id, low=entry["score_range"]["low"], high=entry["score_range"]["high"],
            metrics=metrics, config=read_json(folder / "config.json"),
            full=read_json(full_path) if full_path.is_file() else None,
            human=HUMAN_QWK.get(item_id) if human is None else float(human),
            others=others.get(item_id, {}),
        ))
    return results
