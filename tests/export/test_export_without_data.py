"""The Docker build's situation: the committed adapters exported where the ASAP data is not at hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from export.pipeline import ExportOptions, export_all

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_an_ensemble_exports_without_its_data_set(tmp_path: Path) -> None:
    """Without data the golden answers are placeholders; every member of an ensemble must get the same ones
    (the exporter refuses an ensemble whose members were checked on other texts: the image never built)."""
    committed = REPO / "adapters"
    ensemble = json.loads((committed / "ensembles" / "asap-01" / "ensemble.json").read_text())
    members = {member["adapter"] for member in ensemble["members"] if member["kind"] != "lexical"}
    assert len({member.split("-")[-1] for member in members}) > 1, "the check needs members of several adapters"
    adapters = tmp_path / "adapters"
    for name in members:
        shutil.copytree(committed / name, adapters / name)
    shutil.copytree(committed / "ensembles" / "asap-01", adapters / "ensembles" / "asap-01")
    listing = json.loads((committed / "manifest.json").read_text())
    listing["items"] = {item_id: entry for item_id, entry in listing["items"].items() if item_id in members}
    (adapters / "manifest.json").write_text(json.dumps(listing))

    manifest = export_all(ExportOptions(adapters, tmp_path / "onnx", data_root=tmp_path / "no-data",
                                        validate="golden", fused=False, log=lambda _: None))

    served = manifest["items"]["asap-01"]
    assert len(served["members"]) == len(ensemble["members"])
    golden = [manifest["items"][name]["golden"]["texts"] for name in sorted(members)]
    assert all(texts == golden[0] for texts in golden)
    assert all("asap-01" in text and "-e5" not in text for text in golden[0])
    assert served["validated_on"] == {"golden": len(golden[0])}
