"""Cost tiers: what each item serves when a deployment picks `fast`, `balanced` or `accurate` (SCORER_TIER).

- accurate: the item's chosen ensemble (adapters/ensembles/<item>/ensemble.json `members`), the default;
- balanced: the best of the item's evaluated combinations that cost what its adapter alone costs: one trunk run
  and one head run per answer, plus at most the lexical member (an n-gram model, a fraction of a head run). A
  MiniLM head is half the backbone's layers (split at 3 of 6), so further heads would not be "balanced";
- fast: the item's own adapter alone (one trunk run, one head).

The balanced choice follows the rule that chose the ensemble, restricted to one trunk: where the ensembles were
chosen pooled over items (one kind for all, `selection` names it), the kind with the best mean cross-fitted
validation QWK over those items; where an item chose alone (add-item: `per item`), its own best. Test answers
never choose (ensemble.json carries their figures for the report only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.ensemble_build import ENSEMBLE_FILE, apply_choice, pooled_choice


def read_ensembles(adapters: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted((adapters / "ensembles").glob(f"*/{ENSEMBLE_FILE}"))]


def _one_trunk(ensemble: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates at a single head's cost (one trunk run, one head run; the lexical member allowed)."""
    return [candidate for candidate in ensemble["candidates"]
            if sum(entry["kind"] == "adapter" for entry in candidate["entries"]) == 1]


def balanced_signatures(ensembles: list[dict[str, Any]]) -> dict[str, str]:
    """Ensemble id (its first adapter's key) -> the signature of its balanced combination."""
    pooled = [ensemble for ensemble in ensembles if ensemble.get("selection", "per item") != "per item"]
    pooled_ids = {ensemble["item_id"] for ensemble in pooled}
    kind = pooled_choice([{**ensemble, "candidates": _one_trunk(ensemble)} for ensemble in pooled])[0] if pooled else ""
    chosen: dict[str, str] = {}
    for ensemble in ensembles:
        candidates = _one_trunk(ensemble)
        if not candidates:
            continue
        offered = {candidate["signature"] for candidate in candidates}
        if ensemble["item_id"] in pooled_ids and kind in offered:
            chosen[ensemble["item_id"]] = kind
        else:
            best = max(candidates, key=lambda c: (c["crossfit_validation_qwk"], -len(c["members"])))
            chosen[ensemble["item_id"]] = best["signature"]
    return chosen


def balanced_ensemble(ensemble: dict[str, Any], signatures: dict[str, str]) -> dict[str, Any] | None:
    """The item's balanced combination as an ensemble.json of its own (members, thresholds, version), or None
    where it is the accurate one or the item's adapter alone (those entries serve it)."""
    signature = signatures.get(ensemble["item_id"])
    if signature is None or signature == ensemble["chosen"]["signature"]:
        return None
    balanced = apply_choice(ensemble, wanted=signature)
    if len(balanced["members"]) < 2:
        return None
    return balanced


def tier_members(adapters: Path) -> set[str]:
    """Adapter keys some tier serves beyond the chosen ensembles (they must be exported too)."""
    ensembles = read_ensembles(adapters)
    signatures = balanced_signatures(ensembles)
    keys: set[str] = set()
    for ensemble in ensembles:
        balanced = balanced_ensemble(ensemble, signatures)
        if balanced is not None:
            keys |= {str(member["adapter"]) for member in balanced["members"] if member["kind"] == "adapter"}
    return keys
