"""bench/host_path.py takes ONNX Runtime's time out of the host path, and bench/evidence.py's figures."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from app.backend import AnswerRow
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from bench.evidence import _item_figures, means
from bench.host_path import OrtClock, measure
from tests.conftest import TINY_ITEM_ROWS


def test_host_path_stages_on_a_real_backend(tiny_artifacts: Path) -> None:
    backend = OnnxBackend(Settings(artifacts=tiny_artifacts, threads=1, duplicate_cache_entries=0))
    backend.warm_up()
    rows = [AnswerRow("item-" + "ab"[n % 2], f"{text} {n}") for n, (text, _) in enumerate(TINY_ITEM_ROWS * 8)]
    original = ort.InferenceSession.run
    stages = measure(backend, rows, batch=16)
    assert ort.InferenceSession.run is original  # the clock is taken off again
    assert set(stages) == {"prepare", "keys", "models_host", "finish", "model", "response"}
    assert all(seconds > 0 for seconds in stages.values())
    with OrtClock() as clock:
        measure(backend, rows[:4], batch=4)
    assert clock.seconds > 0


def test_evidence_figures() -> None:
    results = [{"score": 1, "review_reasons": [], "evidence": {"neighbour_score": 1}},
               {"score": 2, "review_reasons": ["neighbours_disagree"], "evidence": {"neighbour_score": 0}},
               {"score": 0, "review_reasons": [], "evidence": {"neighbour_score": 0}}]
    figures = _item_figures([1, 0, 0], results, [0, 1, 2])
    assert figures["neighbours_agree_with_served"] == round(2 / 3, 4)
    assert figures["neighbours_agree_with_human"] == 1.0
    assert figures["flagged_share"] == round(1 / 3, 4)
    assert figures["accuracy_flagged"] == 0.0 and figures["accuracy_unflagged"] == 1.0
    assert means({"a": figures, "b": figures})["flagged_share"] == figures["flagged_share"]
