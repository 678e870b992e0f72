from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.asap import HUMAN_QWK, load_asap_item, score_range
from training.data import Columns, DataError, ScoreRange, item_from_rows, read_scored_table, stratified_split


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_csv_tsv_jsonl_read_the_same(tmp_path: Path) -> None:
    csv_file = write(tmp_path / "a.csv", 'item_id,answer,score\nq1,"yes, it is",1\nq1,no,0\n')
    tsv_file = write(tmp_path / "a.tsv", "item_id\tanswer\tscore\nq1\tyes, it is\t1\nq1\tno\t0\n")
    jsonl_file = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in [
        {"item_id": "q1", "answer": "yes, it is", "score": 1}, {"item_id": "q1", "answer": "no", "score": 0}]))
    results = [read_scored_table(p) for p in (csv_file, tsv_file, jsonl_file)]
    texts = [[(t, s) for _, t, s, _ in r["q1"]] for r in results]
    assert texts[0] == texts[1] == texts[2] == [("yes, it is", 1), ("no", 0)]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "file is empty"),
        ("item_id,text,score\nq1,hello,1\n", "missing column"),
        ("item_id,answer,score\nq1,hello,7\n", "outside the declared range"),
        ("item_id,answer,score\nq1,hello,1.5\n", "not an integer"),
        ("item_id,answer,score\nq1,,1\n", "empty or missing answer"),
        (b"item_id,answer,score\nq1,caf\xe9,1\n", "not UTF-8"),
    ],
)
def test_bad_files_name_file_row_and_problem(tmp_path: Path, content: str | bytes, problem: str) -> None:
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(DataError) as error:
        read_scored_table(path, score_ranges={"q1": ScoreRange(0, 2)})
    assert problem in str(error.value)
    assert str(path) in str(error.value)
    if error.value.row is not None:
        assert f"row {error.value.row}" in str(error.value)


def test_bad_row_number_is_the_one_a_person_sees(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", "item_id,answer,score\nq1,a,1\nq1,b,1\nq1,c,9\n")
    with pytest.raises(DataError, match="row 4"):
        read_scored_table(path, score_ranges={"q1": ScoreRange(0, 2)})


def test_stratified_split_is_deterministic_and_keeps_every_class() -> None:
    rows = [(f"t{n}", n % 3) for n in range(90)] + [("rare", 3), ("rare2", 3)]
    kept_a, carved_a = stratified_split(rows, 0.1, seed=1)
    kept_b, carved_b = stratified_split(rows, 0.1, seed=1)
    assert carved_a == carved_b and kept_a == kept_b
    assert {s for _, s in carved_a} == {0, 1, 2, 3}
    assert len(kept_a) + len(carved_a) == len(rows)


def test_unsplit_file_gets_train_validation_test(tmp_path: Path) -> None:
    path = write(tmp_path / "one.csv", "answer,score\n" + "".join(f"answer {n},{n % 3}\n" for n in range(100)))
    rows = read_scored_table(path, Columns(item=None), default_item="new-item")
    item = item_from_rows("new-item", rows["new-item"], ScoreRange(0, 2))
    sizes = [len(item.train), len(item.validation), len(item.test)]
    assert sum(sizes) == 100 and min(sizes) >= 9


def test_asap_standard_split() -> None:
    item = load_asap_item("asap-01")
    assert len(item.train) + len(item.validation) == 1672
    assert len(item.test) == 557
    assert 160 <= len(item.validation) <= 175
    assert score_range("asap-05") == ScoreRange(0, 3) and score_range("asap-07") == ScoreRange(0, 2)
    assert set(HUMAN_QWK) == {f"asap-{n:02d}" for n in range(1, 11)}
    assert {s for _, s in item.test} == {0, 1, 2, 3}


def test_both_raters_add_each_training_answer_with_its_second_score_only() -> None:
    first, both = load_asap_item("asap-07"), load_asap_item("asap-07", raters="both")
    assert both.train[: len(first.train)] == first.train  # Score1 rows first, unchanged
    assert len(both.train) == 2 * len(first.train)  # every ASAP training answer has a Score2
    assert (both.validation, both.test) == (first.validation, first.test)  # official scores only
    disagreements = sum(a != b for (_, a), (_, b) in zip(first.train, both.train[len(first.train):], strict=True))
    assert 0 < disagreements < len(first.train) // 2  # raters mostly agree (human QWK 0.97), not always
