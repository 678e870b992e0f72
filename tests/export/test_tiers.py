"""Cost tiers: the balanced combination is chosen on validation as the ensembles were (pooled where they were
pooled, per item where the item chose alone), exported and checked like the accurate ensemble, and served by
SCORER_TIER."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.backend import AnswerRow, Scored, score_now
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from core.manifest import load_artifacts
from export.tiers import balanced_ensemble, balanced_signatures
from tests.conftest import REPO
from training.asap import load_asap_item
from training.ensemble_build import read_ensemble

SHIPPED = {f"asap-{n:02d}": read_ensemble(REPO / "adapters", f"asap-{n:02d}") or {} for n in range(1, 11)}


def _candidate(signature: str, adapters: int, lexical: bool, crossfit: float) -> dict[str, Any]:
    entries = [{"kind": "adapter", "adapter": f"a{n}", "version": "v1", "weight": 1.0} for n in range(adapters)]
    entries += [{"kind": "lexical", "file": "lexical.onnx", "sha256": "x", "weight": 1.0}] if lexical else []
    return {"signature": signature, "entries": entries, "members": [e.get("adapter", "lexical") for e in entries],
            "crossfit_validation_qwk": crossfit, "trunk_runs": 1, "head_runs": len(entries),
            "thresholds": None, "review_threshold": 0.9, "validation_qwk": crossfit, "test": {"qwk": 0.0}}


def _ensemble(item_id: str, selection: str, figures: dict[str, float]) -> dict[str, Any]:
    candidates = [_candidate("solo", 1, False, figures["solo"]), _candidate("solo+lexical", 1, True, figures["lex"]),
                  _candidate("three", 3, False, figures["three"])]
    return {"item_id": item_id, "selection": selection, "candidates": candidates, "fingerprint": item_id,
            "chosen": candidates[2], "members": candidates[2]["entries"]}


def test_balanced_is_chosen_like_the_ensemble_among_single_head_combinations() -> None:
    pooled = [_ensemble("p1", "three", {"solo": 0.70, "lex": 0.72, "three": 0.90}),
              _ensemble("p2", "three", {"solo": 0.75, "lex": 0.71, "three": 0.90})]  # pooled: lexical 0.715 < 0.725
    alone = _ensemble("x", "per item", {"solo": 0.60, "lex": 0.65, "three": 0.90})
    signatures = balanced_signatures([*pooled, alone])
    assert signatures == {"p1": "solo", "p2": "solo", "x": "solo+lexical"}  # three heads never: not a single head
    assert balanced_ensemble(pooled[0], signatures) is None  # the adapter alone: the fast entry serves it
    balanced = balanced_ensemble(alone, signatures)
    assert balanced is not None and [m["kind"] for m in balanced["members"]] == ["adapter", "lexical"]
    assert balanced["version"] != alone.get("version")


@pytest.mark.slow
def test_committed_items_serve_each_tier(committed_artifacts: Path) -> None:
    accurate, balanced, fast = (load_artifacts(committed_artifacts, tier) for tier in ("accurate", "balanced", "fast"))
    for item_id in (f"asap-{n:02d}" for n in range(1, 11)):
        entry = accurate.manifest["items"][item_id]["tiers"]["balanced"]
        assert entry["validation"] == "full"  # its validation and test QWK reproduced through ONNX Runtime
        assert [m.split("@")[0] for m in balanced.items[item_id].member_names] == [item_id, "lexical"]
        assert fast.items[item_id].member_names == [f"{item_id}@v1"]
        assert len(accurate.items[item_id].member_names) == len(SHIPPED[item_id]["members"])
    rows = [AnswerRow("asap-01", text) for text, _ in load_asap_item("asap-01").test[:24]]
    members = {}
    for tier in ("fast", "balanced", "accurate"):
        backend = OnnxBackend(Settings(artifacts=committed_artifacts, threads=2, tier=tier))  # type: ignore[arg-type]
        backend.warm_up()
        outcomes = score_now(backend, rows)
        assert all(isinstance(outcome, Scored) for outcome in outcomes)
        members[tier] = outcomes[0].members  # type: ignore[union-attr]
    assert len(members["fast"]) == 1 and len(members["balanced"]) == 2
    assert len(members["accurate"]) == len(SHIPPED["asap-01"]["members"]) > 2
    with pytest.raises(ValueError):
        Settings(tier="cheap")  # type: ignore[arg-type]
