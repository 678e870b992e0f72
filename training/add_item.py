"""`python -m training add-item`: a new item from a scored file to a served head in minutes."""

from __future__ import annotations

import time
from pathlib import Path

from app.registry import ITEM_ID
from training.data import Columns, DataError, ItemData, ScoreRange, item_from_rows, read_scored_table
from training.pipeline import train_adapter
from training.trainer import TrainConfig

DEFAULT_COLUMNS = Columns()


def load_item_file(path: Path, item_id: str, score_range: ScoreRange | None, columns: Columns) -> ItemData:
    """The whole file is one item; its scores must fit the declared range (or define it when none is given)."""
    single = Columns(text=columns.text, score=columns.score, item=None, split=columns.split)
    ranges = {item_id: score_range} if score_range else None
    rows = read_scored_table(path, single, ranges, default_item=item_id)[item_id]
    if score_range is None:
        scores = [score for _, _, score, _ in rows]
        score_range = ScoreRange(min(scores), max(scores))
        if score_range.size < 2:
            raise DataError(path, None, "every answer has the same score; nothing to learn")
    return item_from_rows(item_id, rows, score_range)


def add_item(item_id: str, data: Path, score_range: ScoreRange | None, adapters: Path, out: Path,
             config: TrainConfig, min_test_qwk: float, columns: Columns = DEFAULT_COLUMNS,
             backbone: str = "minilm-en") -> dict[str, object]:
    """Validate, split, train, evaluate, write adapters/<id>/vN and export its head. Returns a summary."""
    from export.pipeline import ExportOptions, export_all

    if not ITEM_ID.match(item_id):
        raise DataError(data, None, f"item id {item_id!r} must be a slug: [a-z0-9][a-z0-9_-]{{0,63}}")
    started = time.perf_counter()
    item = load_item_file(data, item_id, score_range, columns)
    adapter, _ = train_adapter(item, adapters, config, backbone, force=True, min_test_qwk=min_test_qwk)
    trained = time.perf_counter() - started
    key = str(adapter["item_id"])  # item_id, or item_id + the backbone's suffix (e5: "-e5")
    low = item.score_range.low
    texts = {key: {name: ([t for t, _ in rows], [s - low for _, s in rows])
                       for name, rows in (("validation", item.validation), ("test", item.test))}}
    # Only the new item's backbone is exported: the other backbones' heads stay as they were.
    manifest = export_all(ExportOptions(adapters, out, item_texts=texts,
                                        backbone=backbone if Path(backbone).is_dir() else None,
                                        backbones=(str(adapter["backbone"]["name"]),)))
    entry = manifest["items"][key]
    return {"item_id": key, "version": adapter["version"], "score_range": str(item.score_range),
            "sizes": {name: len(rows) for name, rows in item.splits().items()},
            "test_qwk": entry["qwk"]["test"]["qwk_onnx"], "max_abs_logit_diff": entry["max_abs_logit_diff"],
            "seconds_train": round(trained, 1), "seconds_total": round(time.perf_counter() - started, 1)}
