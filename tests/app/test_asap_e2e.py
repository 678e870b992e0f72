"""The real backbones with every committed ASAP head, exported with the full check and served through uvicorn."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from export.ensemble import adapters_in_ensembles
from tests.conftest import REPO, Server
from training.asap import load_asap_item
from training.metrics import quadratic_weighted_kappa

pytestmark = pytest.mark.slow
GOLDEN = json.loads((REPO / "tests" / "golden" / "asap.json").read_text())


@pytest.fixture(scope="module")
def asap_artifacts(committed_artifacts: Path) -> Path:
    """All committed items, exported and validated like `make export` (the session's one full export)."""
    return committed_artifacts


def test_every_committed_item_passed_the_full_check(asap_artifacts: Path) -> None:
    """CI guards every landing: each committed adapter's head matched PyTorch on all its validation and test
    answers (the exporter refuses a head that does not), not only on its golden answers."""
    manifest = json.loads((asap_artifacts / "manifest.json").read_text())
    adapters = json.loads((REPO / "adapters" / "manifest.json").read_text())["items"]
    serving = adapters_in_ensembles(REPO / "adapters")

    def tagged(item_id: str) -> bool:
        config = REPO / "adapters" / item_id / adapters[item_id]["current"] / "config.json"
        return bool(json.loads(config.read_text()).get("member_tag"))

    # every current adapter, except extra members (another seed, both raters) no chosen ensemble serves
    expected = {item_id for item_id, entry in adapters.items() if entry.get("current")
                and (not tagged(item_id) or item_id in serving)}
    assert set(manifest["items"]) == expected
    assert {item_id for item_id in expected if tagged(item_id)} == {i for i in serving if tagged(i)}
    for item_id, served in manifest["items"].items():
        config_path = REPO / "adapters" / item_id / adapters[item_id]["current"] / "config.json"
        item = load_asap_item(json.loads(config_path.read_text()).get("source_item", item_id))  # asap-01-e5: asap-01
        # An ensemble item: its combination reproduced training's QWK on both splits, and its first member's
        # own entry (the fast mode) passed the head check like every single item.
        for entry in (served, served["fast"]) if "fast" in served else (served,):
            assert entry["validation"] == "full", item_id
            assert entry["validated_on"] == {"validation": len(item.validation), "test": len(item.test), "golden": 8}
        assert served.get("fast", served)["max_abs_logit_diff"] <= 1e-4, item_id


@pytest.fixture(scope="module")
def asap_server(committed_server: Server) -> Server:
    return committed_server


@pytest.fixture(scope="module")
def fast_server(committed_fast_server: Server) -> Server:
    """Every item by its own MiniLM adapter alone (SCORER_ENSEMBLES=false): what the PyTorch golden file holds."""
    return committed_fast_server


def test_golden_answers_reproduce_pytorch(fast_server: Server) -> None:
    for item_id, golden in GOLDEN.items():
        texts = [answer["text"] for answer in golden["answers"]]
        results = httpx.post(f"{fast_server.url}/score/{item_id}", json={"answers": texts}).json()["results"]
        assert [r["score"] for r in results] == [a["score"] for a in golden["answers"]]
        assert all(r["adapter_version"] == golden["adapter_version"] for r in results)
        probabilities = np.array([r["probabilities"] for r in results])
        logits = np.array([a["logits"] for a in golden["answers"]])
        expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        assert np.abs(probabilities - expected).max() < 1e-4


def test_two_items_give_different_outputs_for_one_answer(asap_server: Server) -> None:
    answer = {"answer": "The acid rain would dissolve the limestone and marble samples."}
    first = httpx.post(f"{asap_server.url}/score/asap-01", json=answer).json()
    second = httpx.post(f"{asap_server.url}/score/asap-02", json=answer).json()
    assert first["probabilities"] != second["probabilities"]


def test_batch_over_test_set_reproduces_exporter_qwk(asap_server: Server, asap_artifacts: Path) -> None:
    manifest = json.loads((asap_artifacts / "manifest.json").read_text())
    rows, truth = [], {}
    for item_id in GOLDEN:
        item = load_asap_item(item_id)
        truth[item_id] = [score for _, score in item.test]
        rows += [{"id": f"{item_id}:{n}", "item_id": item_id, "answer": text} for n, (text, _) in enumerate(item.test)]
    results = []
    for start in range(0, len(rows), 500):  # mixed items in every request, as a teacher dashboard sends
        chunk = rows[start : start + 500]
        response = httpx.post(f"{asap_server.url}/batch", json={"answers": chunk}, timeout=120)
        results += response.json()["results"]
    assert [r["id"] for r in results] == [r["id"] for r in rows]
    for item_id, scores in truth.items():
        predicted = [r["score"] for r in results if r["item_id"] == item_id]
        labels = manifest["items"][item_id]["labels"]
        qwk = quadratic_weighted_kappa(scores, predicted, labels)
        assert qwk == pytest.approx(manifest["items"][item_id]["qwk"]["test"]["qwk_onnx"], abs=1e-9)
