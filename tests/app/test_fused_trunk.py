"""The fused trunk (ORT transformer fusions, export/fused.py) is exported and validated, served when chosen
(by default on CUDA), and answers as the plain trunk does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.backend import AnswerRow, Scored, score_now
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from core.manifest import backbone_entries, load_artifacts

ANSWERS = ["acid rain reacts with limestone", "i do not know", "the mass of the samples went down", "vinegar"]


def test_the_export_fuses_and_validates_the_trunk(tiny_artifacts: Path) -> None:
    manifest = load_artifacts(tiny_artifacts).manifest
    for entry in backbone_entries(manifest).values():
        fused = entry["fused"]
        assert fused["allowed"] and fused["max_abs_golden_logit_diff"] < 1e-4
        assert fused["fusions"].get("Attention") and fused["fusions"].get("SkipLayerNormalization")
        assert (tiny_artifacts / fused["file"]).is_file()


def test_the_fused_trunk_answers_as_the_plain_one(tiny_artifacts: Path) -> None:
    fused = OnnxBackend(Settings(artifacts=tiny_artifacts, threads=1, fused_trunk="on"))
    plain = OnnxBackend(Settings(artifacts=tiny_artifacts, threads=1))  # auto: plain on the CPU
    files = next(iter(fused.trunks.values())).files
    assert files.fused_path is not None
    assert all(trunk.path == files.fused_path for trunk in fused.trunks.values())
    assert all(trunk.path == files.trunk_path for trunk in plain.trunks.values())
    rows = [AnswerRow(item_id, text) for text in ANSWERS for item_id in ("item-a", "item-b")]
    for left, right in zip(score_now(fused, rows), score_now(plain, rows), strict=True):
        assert isinstance(left, Scored) and isinstance(right, Scored)
        assert left.score == right.score
        assert np.abs(np.asarray(left.probabilities) - np.asarray(right.probabilities)).max() < 1e-5
