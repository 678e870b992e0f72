"""Both backbones in one deployment, and German answers to an item trained on English answers only.

All committed adapters, asap-01 (MiniLM) and asap-01-e5 (multilingual E5) among them, are exported together
and served through uvicorn. asap-01 asks what extra information is needed to replicate a vinegar/marble
experiment. No German scored data exists here, so the German check is qualitative: correct German
answers must score above off-topic ones and "I don't know" on the E5 adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.slow
ITEMS = ("asap-01", "asap-01-e5")
CORRECT_DE = [
    "Man müsste wissen, wie viel Essig in jeden Behälter gegossen wird, welche Art von Essig verwendet "
    "wird und wie groß die Behälter sind.",
    "Ich bräuchte die Menge an Essig, die Sorte des Essigs, die Größe der Proben und die Temperatur, "
    "bei der die Proben stehen.",
    "Welche Essigmenge, welcher Behältertyp und wie groß die Marmor- und Kalksteinproben sein sollen.",
]
WEAK_DE = [
    "Ich mag Pizza und spiele am Wochenende gern Fußball.",
    "Ich weiß es nicht.",
    "Das Experiment war gut.",
]


@pytest.fixture(scope="module")
def mixed_artifacts(committed_artifacts: Path) -> Path:
    """Every committed item, both backbones (the session's one full export)."""
    return committed_artifacts


@pytest.fixture(scope="module")
def mixed_server(committed_server: Server) -> Server:
    return committed_server


def _expected_scores(url: str, item_id: str, answers: list[str]) -> np.ndarray:
    results = httpx.post(f"{url}/score/{item_id}", json={"answers": answers}, timeout=60).json()["results"]
    probabilities = np.array([result["probabilities"] for result in results])
    return np.asarray(probabilities @ np.arange(probabilities.shape[1]))


def test_one_trunk_per_backbone_and_mixed_batches(mixed_server: Server, mixed_artifacts: Path) -> None:
    manifest = json.loads((mixed_artifacts / "manifest.json").read_text())
    assert set(manifest["backbones"]) == {"minilm-en", "e5-multilingual"}
    assert manifest["backbones"]["e5-multilingual"]["backbone"]["text_prefix"] == "query: "
    answer = "You would need to know how much vinegar, what type of vinegar and what size the containers were."
    rows = [{"id": str(n), "item_id": item_id, "answer": answer} for n, item_id in enumerate(ITEMS * 3)]
    results = httpx.post(f"{mixed_server.url}/batch", json={"answers": rows}, timeout=60).json()["results"]
    assert [result["item_id"] for result in results] == list(ITEMS * 3)
    assert all("score" in result for result in results), results
    # same answer, different backbones and heads: different probabilities
    assert results[0]["probabilities"] != results[1]["probabilities"]


def test_correct_german_answers_score_above_off_topic_ones(mixed_server: Server) -> None:
    scores = _expected_scores(mixed_server.url, "asap-01-e5", [*CORRECT_DE, *WEAK_DE])
    correct, weak = scores[: len(CORRECT_DE)], scores[len(CORRECT_DE) :]
    assert correct.min() > weak.max(), (correct, weak)
    assert correct.mean() - weak.mean() >= 1.0, (correct, weak)  # a whole score point apart on a 0-3 item


def test_cased_twins_and_unreadable_scripts_on_e5(mixed_server: Server) -> None:
    """E5's tokenizer is cased: an upper-cased twin is another input and is scored, never served the
    original's cached score. Its vocabulary keeps Latin-script pieces only: a Cyrillic answer is flagged."""
    url, answer = mixed_server.url, CORRECT_DE[0]
    first = httpx.post(f"{url}/score/asap-01-e5", json={"answer": answer}).json()
    twin = httpx.post(f"{url}/score/asap-01-e5", json={"answer": answer.upper()}).json()
    alone = httpx.post(f"{url}/score/asap-01-e5", json={"answers": [answer.upper(), "x"]}).json()["results"][0]
    assert twin["probabilities"] == alone["probabilities"] != first["probabilities"]
    cyrillic = httpx.post(f"{url}/score/asap-01-e5", json={"answer": "Нужно знать, сколько уксуса налили в "
                                                                      "каждый контейнер."}).json()
    assert cyrillic["needs_review"] and "unknown_words" in cyrillic["review_reasons"]
    assert "unknown_words" not in first["review_reasons"]
