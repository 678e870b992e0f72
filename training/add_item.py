"""A new item's scored file, read and checked (add-item's training half; cli/add_item.py runs it all)."""

from __future__ import annotations

from pathlib import Path

from training.data import Columns, DataError, ItemData, ScoreRange, item_from_rows, read_scored_table

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


def evidence_rows(path: Path, item: ItemData, columns: Columns) -> list[tuple[str, str, int]]:
    """The item's training and validation answers as its evidence index takes them: each named by its row in
    the file ("row 17", as a person counts rows and as add-item's errors name them), 0-based score. Test answers
    stay out: they judge what is served."""
    single = Columns(text=columns.text, score=columns.score, item=None, split=columns.split)
    rows_of: dict[str, list[int]] = {}
    for row, text, _, _ in read_scored_table(path, single, None, default_item=item.item_id)[item.item_id]:
        rows_of.setdefault(text, []).append(row)
    low = item.score_range.low
    evidence = []
    for text, score in [*item.train, *item.validation]:
        numbers = rows_of.get(text) or [0]
        evidence.append((f"row {numbers.pop(0) if len(numbers) > 1 else numbers[0]}", text, score - low))
    return evidence
