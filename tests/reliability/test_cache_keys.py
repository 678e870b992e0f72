"""Scenario 6: the duplicate-answer cache never serves one answer's score for another. On a cased tokenizer,
twins that differ only in case, or in characters the tokenizer's normaliser deletes but `str.split` treats
as spaces, are different inputs to the model and must be scored as such."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_ITEM_ROWS
from tests.reliability.harness import metric_value, start_server
from tests.reliability.report import ResultsTable, Row

pytestmark = pytest.mark.reliability


def cased_artifacts(tiny_artifacts: Path, folder: Path) -> Path:
    """The tiny items served through a cased variant of their tokenizer (as E5's is cased)."""
    shutil.copytree(tiny_artifacts, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = manifest["backbones"].values() if "backbones" in manifest else [manifest]
    for entry in entries:
        path = folder / entry["tokenizer"]["file"]
        tokenizer = json.loads(path.read_text())
        tokenizer["normalizer"]["lowercase"] = False
        path.write_text(json.dumps(tokenizer))
    return folder


def twins() -> list[tuple[str, str]]:
    originals = [f"{text} {n}" for n, (text, _) in enumerate(TINY_ITEM_ROWS * 4)]
    cased = [(text, text.upper() if n % 2 else text.title()) for n, text in enumerate(originals)]
    joined = [(text, text.replace(" ", "\x1f", 1)) for text in originals]  # deleted by the BERT normaliser
    return cased + joined + [(text, text.replace(" ", "\x85", 1)) for text in originals[:8]]


def test_twins_are_never_served_each_others_scores(tiny_artifacts: Path, tmp_path: Path,
                                                   results_table: ResultsTable) -> None:
    folder = cased_artifacts(tiny_artifacts, tmp_path / "cased")
    cached = start_server({"SCORER_ARTIFACTS": str(folder)}, tmp_path / "cached.log")
    uncached = start_server({"SCORER_ARTIFACTS": str(folder), "SCORER_DUPLICATE_CACHE_ENTRIES": "0"},
                            tmp_path / "uncached.log")
    try:
        pairs = twins()
        wrong = differing = 0
        for original, twin in pairs:
            first = httpx.post(f"{cached.url}/score/item-a", json={"answer": original}).json()
            served = httpx.post(f"{cached.url}/score/item-a", json={"answer": twin}).json()  # after the original
            alone = httpx.post(f"{uncached.url}/score/item-a", json={"answer": twin}).json()
            differing += first["probabilities"] != alone["probabilities"]
            wrong += served["probabilities"] != alone["probabilities"]
        hits_before = metric_value(cached.url, "scorer_duplicate_cache_hits_total ") or 0.0
        again = httpx.post(f"{cached.url}/score/item-a", json={"answer": "  " + pairs[0][0] + " "}).json()
        hits = (metric_value(cached.url, "scorer_duplicate_cache_hits_total ") or 0.0) - hits_before
        ok = wrong == 0 and differing > 0
        results_table.add(Row("6. duplicate cache: cased and control-character twins", 3 * len(pairs) + 1, 0,
                              wrong, float("nan"), "pass" if ok else "FAIL",
                              f"{len(pairs)} twins (upper/title case, U+001F, U+0085) on a cased tokenizer, each "
                              f"sent after its original: {differing} score differently from their original, "
                              f"{wrong} were served another answer's score (the old key, lower-cased text with "
                              "whitespace collapsed, maps every one of these twins onto its original)"))
        assert differing > 0, "the twins all score alike: the scenario proves nothing"
        assert wrong == 0
        assert hits == 1 and again["probabilities"] == httpx.post(  # same ids (only spacing differs): a hit
            f"{uncached.url}/score/item-a", json={"answer": pairs[0][0]}).json()["probabilities"]
    finally:
        cached.stop()
        uncached.stop()
