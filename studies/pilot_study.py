"""Adapters trained another way (another backbone, rank or split), compared with the items' committed adapters.

A pilot folder holds adapters trained by `python -m training train --adapters <folder> ...` (e.g. the
domain-adapted backbone, MPNet, rank 16); each is paired with its source item's committed MiniLM adapter
(same data, recipe and seed unless the pilot changes them). Validation QWK is what chooses: the adapter's
best-epoch validation QWK, as training's early stopping saw it. Test QWK is reported beside, never used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.artifacts import AdapterRecord, current_record, read_manifest

Json = dict[str, Any]


def best_validation_qwk(metrics: Json) -> float:
    best = int(metrics["best_epoch"])
    return float(next(record["val_qwk"] for record in metrics["curve"] if record["epoch"] == best))


def pilot_records(pilot: Path) -> list[AdapterRecord]:
    if not (pilot / "manifest.json").is_file():
        return []
    records = [current_record(pilot, key) for key in sorted(read_manifest(pilot)["items"])]
    return [record for record in records if record is not None]


def pilot_rows(pilot: Path, committed: Path) -> list[Json]:
    """One row per pilot adapter whose source item has a committed adapter."""
    rows = []
    for other in pilot_records(pilot):
        source = other.source_item
        own = current_record(committed, source)
        if own is None:
            continue
        rows.append({"item": source, "adapter": other.item_id, "tag": str(other.config.get("member_tag", "")),
                     "backbone": str(other.config["backbone"]["name"]),
                     "validation_plain": best_validation_qwk(own.metrics),
                     "validation_adapted": best_validation_qwk(other.metrics),
                     "test_plain": own.metrics["test"]["qwk"], "test_adapted": other.metrics["test"]["qwk"],
                     "train_seconds_plain": own.metrics["seconds"]["total"],
                     "train_seconds_adapted": other.metrics["seconds"]["total"]})
    return rows


def mean_change(rows: list[Json], split: str) -> float:
    return float(np.mean([row[f"{split}_adapted"] - row[f"{split}_plain"] for row in rows])) if rows else 0.0
