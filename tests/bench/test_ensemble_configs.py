"""The per-kind cost bench serves the kind it measures: every item's ensemble re-pointed at it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.ensemble_configs import KINDS, point_at
from tests.conftest import REPO


def test_every_item_serves_the_kind_being_measured(tmp_path: Path) -> None:
    shutil.copytree(REPO / "adapters" / "ensembles", tmp_path / "ensembles")
    levers = json.loads((REPO / "reports" / "levers.json").read_text())
    assert set(KINDS) <= set(levers)  # each measured kind has the lever study's QWK figures
    for kind in ("minilm-en+lexical", "minilm-en+e5-multilingual+minilm-en/s14+lexical"):
        point_at(tmp_path, kind)
        chosen = [json.loads(path.read_text())["chosen"] for path in sorted(tmp_path.glob("ensembles/*/*.json"))]
        assert len(chosen) == 10 and {entry["signature"] for entry in chosen} == {kind}
        assert all(len(entry["members"]) == kind.count("+") + 1 for entry in chosen)
