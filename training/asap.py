"""The ASAP-SAS items (Kaggle 2012), registered as asap-01 ... asap-10, on the standard split."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Literal

from training.data import (
    Columns,
    DataError,
    ItemData,
    ScoreRange,
    item_from_rows,
    read_scored_table,
    with_second_scores,
)

ASAP_ITEMS = [f"asap-{number:02d}" for number in range(1, 11)]
# From the data set's README (rubrics): 0-3 for sets 1, 2, 5, 6 and 0-2 for the rest.
_WIDE = {1, 2, 5, 6}
# Score1 vs Score2 QWK on the training rows, computed in the data set's README: the human ceiling.
HUMAN_QWK = {
    "asap-01": 0.9435, "asap-02": 0.9143, "asap-03": 0.7552, "asap-04": 0.7486, "asap-05": 0.9534,
    "asap-06": 0.9562, "asap-07": 0.9685, "asap-08": 0.8559, "asap-09": 0.8279, "asap-10": 0.8838,
}  # fmt: skip
SPLIT_SEED = 13
Raters = Literal["first", "both"]


def score_range(item_id: str) -> ScoreRange:
    return ScoreRange(0, 3 if int(item_id.split("-")[1]) in _WIDE else 2)


def default_root() -> Path:
    """$ASAP_SAS_DIR, else ../shared/data/asap-sas next to the repository."""
    env = os.environ.get("ASAP_SAS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "asap-sas"


def _set_dir(root: Path, item_id: str) -> Path:
    return root / "autosas-reimp" / "data" / f"asap_{item_id.split('-')[1]}"


def item_csv(item_id: str, root: Path | None = None) -> Path:
    """The item's table (Id, EssaySet, Score1, Score2, EssayText, split)."""
    return _set_dir(root or default_root(), item_id) / "df.csv"


def load_asap_item(item_id: str, root: Path | None = None, seed: int = SPLIT_SEED,
                   raters: Raters = "first") -> ItemData:
    """Train = split=='train' minus a stratified 10 % validation (fixed seed); test = split=='test'.

    raters "both": each training answer appears twice, once with each rater's score (`with_both_raters`)."""
    if item_id not in ASAP_ITEMS:
        raise DataError(item_id, None, f"not an ASAP item; known: {ASAP_ITEMS}")
    root = root or default_root()
    csv_path = item_csv(item_id, root)
    if not csv_path.is_file():
        raise DataError(csv_path, None, "ASAP-SAS file not found (set ASAP_SAS_DIR)")
    columns = Columns(text="EssayText", score="Score1", item=None, split="split")
    rows = read_scored_table(csv_path, columns, {item_id: score_range(item_id)}, default_item=item_id)
    item = item_from_rows(item_id, rows[item_id], score_range(item_id), seed=seed)
    prompt_path = root / "autosas-reimp" / "data" / "metadata" / "problems" / f"asap_{item_id[-2:]}.txt"
    if prompt_path.is_file():
        item.prompt = prompt_path.read_text(encoding="utf-8", errors="replace").strip()
    return with_both_raters(item, root) if raters == "both" else item


def second_scores(item_id: str, root: Path | None = None) -> dict[str, int]:
    """Answer text -> Score2, for the training rows that have one (ASAP has none for test)."""
    with open(item_csv(item_id, root), newline="", encoding="utf-8") as handle:
        return {row["EssayText"]: int(float(row["Score2"])) for row in csv.DictReader(handle)
                if row["split"] == "train" and row["Score2"].strip()}


def with_both_raters(item: ItemData, root: Path | None = None) -> ItemData:
    """Each training answer twice, once with each rater's score (training/data.py with_second_scores)."""
    return with_second_scores(item, second_scores(item.item_id, root))
