"""Ensemble items through the real service: every committed ensemble (MiniLM + E5 heads + the lexical member)
exported with the full check, served through uvicorn, and the failure a member must never hide."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from app.backend import AnswerRow, Scored, score_now
from app.errors import ItemUnavailable
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from tests.conftest import REPO, Server
from training.asap import load_asap_item

pytestmark = pytest.mark.slow
ENSEMBLES = {path.parent.name: json.loads(path.read_text())
             for path in sorted((REPO / "adapters" / "ensembles").glob("*/ensemble.json"))}
SERVED = {item_id: ensemble for item_id, ensemble in ENSEMBLES.items() if len(ensemble["members"]) > 1}
ANSWER = "The acid rain would dissolve the limestone and marble samples faster."


def test_committed_ensembles_are_served_with_their_members_named(committed_server: Server) -> None:
    ensemble_server = committed_server
    assert SERVED, "no committed ensemble items"
    for item_id, ensemble in SERVED.items():
        info = httpx.get(f"{ensemble_server.url}/items/{item_id}").json()
        assert info["combine"] == "mean_probabilities" and info["adapter_version"] == ensemble["version"]
        assert len(info["members"]) == len(ensemble["members"])
        scored = httpx.post(f"{ensemble_server.url}/score/{item_id}", json={"answer": ANSWER}).json()
        assert scored["members"] == info["members"] and scored["adapter_version"] == ensemble["version"]
        assert abs(sum(scored["probabilities"]) - 1) < 1e-4


@pytest.mark.parametrize("answer", ["Η όξινη βροχή διαλύει το μάρμαρο και τον ασβεστόλιθο.",
                                    "المطر الحمضي يذيب الرخام والحجر الجيري"])
def test_unknown_scripts_are_flagged_on_every_ensemble(committed_server: Server, answer: str) -> None:
    """MiniLM reads Greek and Arabic as known single letters; E5's Latin-only vocabulary as unknown tokens:
    the guard must hear every member's trunk (before: score 0, needs_review false, no reasons on asap-01)."""
    for item_id in SERVED:
        scored = httpx.post(f"{committed_server.url}/score/{item_id}", json={"answer": answer}).json()
        assert scored["needs_review"] and "unknown_words" in scored["review_reasons"], (item_id, scored)


def test_fast_mode_serves_each_item_by_its_first_member(committed_fast_server: Server) -> None:
    for item_id, ensemble in SERVED.items():
        scored = httpx.post(f"{committed_fast_server.url}/score/{item_id}", json={"answer": ANSWER}).json()
        assert scored["adapter_version"] == ensemble["fast"]["version"]
        assert scored["members"] == [f"{ensemble['fast']['adapter']}@{ensemble['fast']['version']}"]


def _copy_with_broken_lexical_member(artifacts: Path, target: Path, item_id: str) -> None:
    """The artifact folder by links, except the item's lexical member file (the balanced tier's: the accurate
    ensembles need not have one), which is replaced by garbage."""
    manifest = json.loads((artifacts / "manifest.json").read_text())
    broken = next(m["file"] for m in manifest["items"][item_id]["tiers"]["balanced"]["members"]
                  if m["format"] == "lexical")
    for path in artifacts.rglob("*"):
        if path.is_file():
            copy = target / path.relative_to(artifacts)
            copy.parent.mkdir(parents=True, exist_ok=True)
            if path.relative_to(artifacts).as_posix() == broken:
                copy.write_bytes(b"not an onnx graph")
            else:
                os.symlink(path, copy)


def test_a_member_that_fails_to_load_makes_the_item_unavailable(committed_artifacts: Path, tmp_path: Path) -> None:
    item_id, other = sorted(SERVED)[:2]
    _copy_with_broken_lexical_member(committed_artifacts, tmp_path, item_id)
    backend = OnnxBackend(Settings(artifacts=tmp_path, threads=1, tier="balanced"))  # adapter + lexical member
    broken, fine = score_now(backend, [AnswerRow(item_id, ANSWER), AnswerRow(other, ANSWER)])
    # Never a silent fall-back to the members that did load: the row gets the item's error.
    assert isinstance(broken, ItemUnavailable) and "cannot be loaded" in str(broken)
    assert isinstance(fine, Scored) and len(fine.members) == 2


def test_rows_prepared_before_a_switch_are_scored_by_their_version(committed_artifacts: Path, tmp_path: Path) -> None:
    """A reload from a single head to an ensemble while answers wait: they were tokenized for MiniLM alone and
    must be finished by the version they were prepared for (before: 503 item_unavailable, 17 of 485)."""
    from tests.reliability.test_version_switch import ITEM, _with_history

    ensemble_version = _with_history(committed_artifacts, tmp_path / "onnx")
    backend = OnnxBackend(Settings(artifacts=tmp_path / "onnx", threads=1))
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    single = backend.activate(ITEM, manifest["history"][ITEM][0]["version"])  # the single head serves
    assert single.combine == "single"
    waiting = backend.prepare([AnswerRow(ITEM, ANSWER)])
    assert backend.reload(ITEM).version == ensemble_version
    # In one call with a row prepared for the ensemble: each version's rows run its own members (rows are
    # grouped by item version, not item id) and the two agree as alone.
    fresh = backend.prepare([AnswerRow(ITEM, ANSWER)])
    scored, now = backend.score_prepared([*waiting, *fresh])  # type: ignore[list-item]
    assert isinstance(scored, Scored) and scored.adapter_version == single.version, scored
    assert isinstance(now, Scored) and now.adapter_version == ensemble_version
    (alone,) = score_now(backend, [AnswerRow(ITEM, ANSWER)])
    assert isinstance(alone, Scored) and alone.probabilities == now.probabilities
    assert scored.members != now.members


def test_explain_on_every_committed_item_and_endpoint(committed_server: Server) -> None:
    """Every ASAP item (ensembles) and every E5 item (single heads) explains on /score, /batch and a job; test
    answers are in no index, so no neighbour is the answer itself."""
    url = committed_server.url
    items = {item["item_id"]: item for item in httpx.get(f"{url}/items").json()}
    explained = [item_id for item_id in items if not item_id.endswith(("-s14", "-r2"))]
    assert len(explained) == 20
    rows = []
    for item_id in explained:
        assert items[item_id]["evidence"]["answers"] > 1000 and items[item_id]["evidence"]["texts"] is False
        answer = load_asap_item(item_id.removesuffix("-e5")).test[0][0]
        single = httpx.post(f"{url}/score/{item_id}", json={"answer": answer, "explain": True}).json()
        evidence = single["evidence"]
        assert evidence["member"] == items[item_id]["evidence"]["member"] == items[item_id]["members"][0]
        assert len(evidence["neighbours"]) == 5 and max(n["similarity"] for n in evidence["neighbours"]) < 0.9999
        assert {n["score"] for n in evidence["nearest_by_score"]} == set(range(items[item_id]["score_range"][1] + 1))
        rows.append({"id": item_id, "item_id": item_id, "answer": answer})
    batch = {row["id"]: row for row in httpx.post(f"{url}/batch", json={"answers": rows, "explain": True}).json()[
        "results"]}
    job_id = httpx.post(f"{url}/jobs", json={"answers": rows, "explain": True}).json()["job_id"]
    deadline = time.monotonic() + 120
    while (job := httpx.get(f"{url}/jobs/{job_id}").json())["status"] != "done":
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline
        time.sleep(0.3)
    for row in job["results"]:
        assert row["evidence"] == batch[row["id"]]["evidence"] and row["score"] == batch[row["id"]]["score"]


def test_the_batched_head_graph_scores_the_ensembles_as_per_item_heads_do(committed_artifacts: Path) -> None:
    """The accurate ensembles hold two members on MiniLM's trunk: the batched graph runs them in two rounds over
    the trunk's output as it is (app/batched_run.py; the gathering path, rows left out of a chunk, is
    test_grouped_heads' broken item). The per-item heads' scores either way."""
    rows = [AnswerRow(item_id, text) for item_id in sorted(SERVED)
            for text, _ in load_asap_item(item_id).test[:6]]
    rows.append(AnswerRow("no-such-item", ANSWER))
    outcomes = {grouped: score_now(OnnxBackend(Settings(artifacts=committed_artifacts, threads=1,
                                                        grouped_heads=grouped)), rows) for grouped in ("on", "off")}
    for batched, per_item in zip(outcomes["on"], outcomes["off"], strict=True):
        assert type(batched) is type(per_item)
        if isinstance(batched, Scored) and isinstance(per_item, Scored):
            assert batched.score == per_item.score and len(batched.members) == 3
            assert max(abs(a - b) for a, b in zip(batched.probabilities, per_item.probabilities, strict=True)) < 1e-4
