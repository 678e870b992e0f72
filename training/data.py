"""Scored-answer tables: a generic CSV/TSV/JSONL loader that refuses bad rows loudly, and splitting."""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Bad input data; the message names the file, the row and the problem."""

    def __init__(self, path: Path | str, row: int | None, problem: str) -> None:
        where = f"{path}" if row is None else f"{path}, row {row}"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.row = row
        self.problem = problem


@dataclass(frozen=True)
class ScoreRange:
    low: int
    high: int

    @property
    def labels(self) -> list[int]:
        return list(range(self.low, self.high + 1))

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    @classmethod
    def parse(cls, text: str) -> ScoreRange:
        """'0-3' -> ScoreRange(0, 3)."""
        try:
            low_text, high_text = text.split("-", 1)
            low, high = int(low_text), int(high_text)
        except ValueError as exc:
            raise ValueError(f"score range must look like '0-3', got {text!r}") from exc
        if high <= low:
            raise ValueError(f"score range {text!r} needs at least two score points")
        return cls(low, high)

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


@dataclass
class ItemData:
    """All scored answers of one item, split into train / validation / test."""

    item_id: str
    score_range: ScoreRange
    train: list[tuple[str, int]] = field(default_factory=list)
    validation: list[tuple[str, int]] = field(default_factory=list)
    test: list[tuple[str, int]] = field(default_factory=list)
    prompt: str = ""

    def splits(self) -> dict[str, list[tuple[str, int]]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass(frozen=True)
class Columns:
    text: str = "answer"
    score: str = "score"
    item: str | None = "item_id"  # None: the whole file is one item
    split: str | None = "split"  # optional; a missing column means "split it for me"


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """(row number as a person counts it, record) pairs; header = row 1 for delimited files."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(path, None, f"cannot read file ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"not UTF-8 text (byte {exc.start} is {raw[exc.start]:#x})") from exc
    if not text.strip():
        raise DataError(path, None, "file is empty")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, number, f"invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DataError(path, number, "each line must be a JSON object")
            yield number, record
        return
    if suffix not in {".csv", ".tsv", ".txt"}:
        raise DataError(path, None, f"unsupported file type {suffix!r} (use .csv, .tsv or .jsonl)")
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter="\t" if suffix == ".tsv" else ",")
    if not reader.fieldnames:
        raise DataError(path, None, "no header row")
    for record in reader:
        yield reader.line_num, dict(record)


def _parse_score(path: Path, row: int, value: object, score_range: ScoreRange | None) -> int:
    if isinstance(value, bool):
        raise DataError(path, row, f"score {value!r} is not an integer")
    if isinstance(value, int):
        score = value
    else:
        text = str(value).strip() if value is not None else ""
        try:
            as_float = float(text)
        except ValueError:
            raise DataError(path, row, f"score {text!r} is not an integer") from None
        if not as_float.is_integer():
            raise DataError(path, row, f"score {text!r} is not an integer")
        score = int(as_float)
    if score_range is not None and not score_range.low <= score <= score_range.high:
        raise DataError(path, row, f"score {score} outside the declared range {score_range}")
    return score


def read_scored_table(
    path: Path | str,
    columns: Columns = Columns(),
    score_ranges: dict[str, ScoreRange] | None = None,
    default_item: str | None = None,
) -> dict[str, list[tuple[int, str, int, str | None]]]:
    """Rows per item as (row, text, score, split or None). Every bad row stops the load."""
    path = Path(path)
    by_item: dict[str, list[tuple[int, str, int, str | None]]] = defaultdict(list)
    checked_header = False
    for row, record in _read_rows(path):
        if not checked_header:
            wanted = [columns.text, columns.score] + ([columns.item] if columns.item else [])
            missing = [name for name in wanted if name not in record]
            if missing:
                raise DataError(path, row, f"missing column(s) {missing}; found {sorted(record)}")
            checked_header = True
        item = str(record[columns.item]).strip() if columns.item else default_item
        if not item:
            raise DataError(path, row, "empty item id")
        text = record.get(columns.text)
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, row, "empty or missing answer text")
        score_range = (score_ranges or {}).get(item)
        score = _parse_score(path, row, record.get(columns.score), score_range)
        split = None
        if columns.split and record.get(columns.split) not in (None, ""):
            split = str(record[columns.split]).strip().lower()
            if split not in {"train", "validation", "test"}:
                raise DataError(path, row, f"split {split!r} must be train, validation or test")
        by_item[item].append((row, text, score, split))
    if not by_item:
        raise DataError(path, None, "no data rows")
    return dict(by_item)


def stratified_split(
    rows: Sequence[tuple[str, int]], fraction: float, seed: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(kept, carved) with `fraction` of every score class carved out, deterministically."""
    by_score: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for row in rows:
        by_score[row[1]].append(row)
    rng = random.Random(seed)
    kept: list[tuple[str, int]] = []
    carved: list[tuple[str, int]] = []
    for score in sorted(by_score):
        group = list(by_score[score])
        rng.shuffle(group)
        n_carved = round(len(group) * fraction)
        if len(group) >= 2:
            n_carved = max(1, n_carved)  # every class is seen on both sides when it can be
        carved.extend(group[:n_carved])
        kept.extend(group[n_carved:])
    return kept, carved


def item_from_rows(
    item_id: str,
    rows: Sequence[tuple[int, str, int, str | None]],
    score_range: ScoreRange,
    seed: int = 13,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> ItemData:
    """Use the file's split column where given; otherwise carve validation/test out, stratified."""
    item = ItemData(item_id, score_range)
    unsplit: list[tuple[str, int]] = []
    for _, text, score, split in rows:
        pair = (text, score)
        if split == "train":
            item.train.append(pair)
        elif split == "validation":
            item.validation.append(pair)
        elif split == "test":
            item.test.append(pair)
        else:
            unsplit.append(pair)
    if not item.test and unsplit:
        unsplit, item.test = stratified_split(unsplit, test_fraction, seed)
    item.train.extend(unsplit)
    if not item.validation:
        item.train, item.validation = stratified_split(item.train, validation_fraction, seed)
    if not item.train or not item.validation or not item.test:
        raise DataError(item_id, None, "too few rows to form train, validation and test sets")
    return item


def with_second_scores(item: ItemData, second: dict[str, int]) -> ItemData:
    """Each training answer a second rater scored appears twice, once per rater: raters who disagree teach the
    model that the answer sits between two scores. Validation and test keep the first (official) score, so
    every figure stays comparable with training on one rater."""
    extra = [(text, second[text]) for text, _ in item.train if text in second]
    return ItemData(item.item_id, item.score_range, train=item.train + extra, validation=item.validation,
                    test=item.test, prompt=item.prompt)


def read_second_scores(path: Path, text_column: str, score_column: str,
                       score_range: ScoreRange | None) -> dict[str, int]:
    """Answer text -> the second rater's score, for the rows that have one (an empty cell: none)."""
    second: dict[str, int] = {}
    for row, record in _read_rows(path):
        value, text = record.get(score_column), record.get(text_column)
        if value not in (None, "") and isinstance(text, str):
            second[text] = _parse_score(path, row, value, score_range)
    return second
