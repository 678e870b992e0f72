"""`explain`: evidence from the item's human-scored training answers, on /score, /batch and jobs, through a real
uvicorn process and real ONNX Runtime sessions (the tiny items: item-a has an evidence index, item-b none)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from core.evidence import EVIDENCE_K
from tests.conftest import Server, tiny_evidence_rows


@pytest.fixture(scope="module")
def server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_BATCH_WAIT_MS": "2"},
                     tmp_path_factory.mktemp("explain") / "server.log")
    running.wait_ready()
    yield running
    running.stop()


def _check_evidence(evidence: dict[str, Any], score: int) -> None:
    neighbours = evidence["neighbours"]
    assert len(neighbours) == EVIDENCE_K and evidence["member"] == "item-a@v1"
    similarities = [n["similarity"] for n in neighbours]
    assert similarities == sorted(similarities, reverse=True) and all(-1.0 <= s <= 1.0001 for s in similarities)
    assert all(0 <= n["score"] <= 2 and "text" not in n for n in neighbours)  # exported without texts
    votes = [n["score"] for n in neighbours]
    assert votes.count(evidence["neighbour_score"]) == max(votes.count(s) for s in set(votes))
    assert evidence["agrees"] == (evidence["neighbour_score"] == score)
    assert sorted(n["score"] for n in evidence["nearest_by_score"]) == [0, 1, 2]


def test_a_training_answer_finds_itself(server: Server) -> None:
    ids = {text: (row_id, score) for row_id, text, score in tiny_evidence_rows("item-a")}
    text = "the mass went down 3"
    result = httpx.post(f"{server.url}/score/item-a", json={"answer": text, "explain": True}).json()
    _check_evidence(result["evidence"], result["score"])
    top = result["evidence"]["neighbours"][0]
    # The index holds the head's features through the exported graphs: the same answer is at similarity 1.
    assert top["similarity"] == pytest.approx(1.0, abs=2e-3)
    assert (top["id"], top["score"]) == ids[text] or top["similarity"] == pytest.approx(
        result["evidence"]["neighbours"][1]["similarity"], abs=2e-3)  # a near-identical twin may come first
    plain = httpx.post(f"{server.url}/score/item-a", json={"answer": text}).json()
    assert "evidence" not in plain and plain["score"] == result["score"]
    assert plain["probabilities"] == pytest.approx(result["probabilities"], abs=1e-6)


def test_batch_and_jobs_explain_and_an_item_without_index(server: Server) -> None:
    rows = [{"id": n, "item_id": "item-a" if n % 3 else "item-b", "answer": f"acid rain {n}"}
            for n in range(9)] + [{"id": "bad", "item_id": "nope", "answer": "x"}]
    batch = httpx.post(f"{server.url}/batch", json={"answers": rows, "explain": True}).json()["results"]
    for row in batch[:-1]:
        if row["item_id"] == "item-a":
            _check_evidence(row["evidence"], row["score"])
            assert ("neighbours_disagree" in row["review_reasons"]) <= (not row["evidence"]["agrees"])
        else:  # item-b was exported without training answers: scored, no evidence
            assert row["score"] is not None and "evidence" not in row
    assert batch[-1]["error_type"] == "unknown_item"
    job_id = httpx.post(f"{server.url}/jobs", json={"answers": rows[:-1], "explain": True}).json()["job_id"]
    deadline = time.monotonic() + 60
    while (job := httpx.get(f"{server.url}/jobs/{job_id}").json())["status"] != "done":
        assert time.monotonic() < deadline and job["status"] in ("queued", "running")
        time.sleep(0.2)
    for from_job, from_batch in zip(job["results"], batch, strict=False):
        assert from_job["score"] == from_batch["score"] and from_job.get("evidence") == from_batch.get("evidence")
    items = {item["item_id"]: item for item in httpx.get(f"{server.url}/items").json()}
    assert items["item-a"]["evidence"] == {"answers": len(tiny_evidence_rows("item-a")), "k": EVIDENCE_K,
                                           "texts": False, "member": "item-a@v1"}
    assert items["item-b"]["evidence"] is None
    assert httpx.post(f"{server.url}/batch", json={"answers": rows, "explain": "yes"}).status_code == 422


def test_a_bad_index_costs_the_evidence_not_the_score(tiny_artifacts: Path, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, artifacts)
    entry = json.loads((artifacts / "manifest.json").read_text())["items"]["item-a"]["evidence"]
    with np.load(artifacts / entry["file"]) as data:
        arrays = dict(data)
    arrays["scores"] = arrays["scores"][::-1].copy()  # another index under the manifest's hash
    with (artifacts / entry["file"]).open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    running = Server({"SCORER_ARTIFACTS": str(artifacts)}, tmp_path / "server.log")
    try:
        running.wait_ready()
        result = httpx.post(f"{running.url}/score/item-a", json={"answer": "idk", "explain": True})
        assert result.status_code == 200 and "evidence" not in result.json()
        assert "evidence index not loaded" in running.log_path.read_text()
    finally:
        running.stop()


def test_the_batched_head_graph_gives_the_same_evidence(server: Server, tiny_artifacts: Path, tmp_path: Path) -> None:
    """SCORER_GROUPED_HEADS=on (the GPU's path, here on the CPU): pooled features from the batched graph."""
    body = {"answers": [{"id": n, "item_id": "item-a", "answer": f"the mass went down {n}"} for n in range(6)],
            "explain": True}
    grouped = Server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_GROUPED_HEADS": "on"}, tmp_path / "g.log")
    try:
        grouped.wait_ready()
        batched = httpx.post(f"{grouped.url}/batch", json=body).json()["results"]
    finally:
        grouped.stop()
    per_item = httpx.post(f"{server.url}/batch", json=body).json()["results"]
    for one, other in zip(batched, per_item, strict=True):
        assert [n["id"] for n in one["evidence"]["neighbours"]] == [n["id"] for n in other["evidence"]["neighbours"]]
        assert [n["similarity"] for n in one["evidence"]["neighbours"]] == pytest.approx(
            [n["similarity"] for n in other["evidence"]["neighbours"]], abs=1e-3)
