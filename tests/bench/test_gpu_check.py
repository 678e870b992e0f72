"""`make gpu-check`'s code path on the CPU (`python -m bench.gpu --device cpu --smoke`): every field of its
JSON, with sane values, so a bug is caught here and not on a rare GPU session.

The reduced-precision path (fp16 on CUDA, int8 on CPU) is exercised with an "int8" trunk that is the fp32
graph itself, declared not allowed: the check must measure it anyway, and its QWK change must be 0."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench.gpu import main
from bench.gpu_engine import cuda_provider_options
from core import onnx_runtime
from tests.conftest import REPO


@pytest.fixture(scope="module")
def exported(request: pytest.FixtureRequest) -> Path:
    """The artifacts of `make export`/`make serve` where this checkout has them (seconds), else the session's
    full export of the committed adapters (CI, shared with the ASAP end-to-end tests)."""
    local = REPO / "build" / "onnx"
    if (local / "manifest.json").is_file():
        return local
    committed: Path = request.getfixturevalue("committed_artifacts")
    return committed


def with_fake_int8(source: Path, folder: Path) -> Path:
    """A copy of `source` (links) whose primary backbone lists an int8 trunk: the fp32 file, not allowed."""
    folder.mkdir()
    for entry in source.iterdir():
        if entry.name != "manifest.json":
            (folder / entry.name).symlink_to(entry.resolve())
    (folder / "trunk.int8.onnx").unlink(missing_ok=True)
    (folder / "trunk.int8.onnx").symlink_to((source / "trunk.onnx").resolve())
    manifest: dict[str, Any] = json.loads((source / "manifest.json").read_text())
    variant = {"file": "trunk.int8.onnx", "allowed": False, "mean_test_qwk_change": -0.5, "measured_on": "test"}
    manifest["int8"] = variant
    if "backbones" in manifest:
        manifest["backbones"][manifest["primary_backbone"]]["int8"] = variant
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.slow
def test_cpu_smoke_writes_every_field(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifacts = with_fake_int8(exported, tmp_path / "onnx")
    out = tmp_path / "gpu.json"
    status = main(["--device", "cpu", "--smoke", "--artifacts", str(artifacts), "--work", str(tmp_path / "work"),
                   "--out", str(out), "--threads", str(min(2, os.cpu_count() or 1))])
    result = json.loads(out.read_text())
    assert result["errors"] == [] and status == 0
    assert "answers/s, mixed items, batch 256" in capsys.readouterr().out  # the table is printed

    assert isinstance(result["device"], str) and result["device"]
    assert result["device_kind"] == "cpu" and result["smoke"] is True and result["precision"] == "fp32"
    assert result["answers_per_s_b256"] > 0 and result["answers_per_s_b32"] > 0
    assert 0 < result["p99_single_ms"] < 10_000 and 0 < result["switch_cold_p99_ms"] < 10_000
    assert result["gpu_memory_mb_27"] is None and result["gpu_memory_mb_1000"] is None  # no GPU here
    assert result["rss_mb_27"] > 50 and result["rss_mb_1000"] is None  # --smoke: no 1000-item process
    assert result["max_abs_logit_diff_vs_cpu"] < 1e-5  # the same CPU kernels as the reference session
    assert result["fp16_qwk_change_vs_fp32"] is None and result["fp16_mean_qwk_change_vs_fp32"] is None
    assert set(result["goals"]) == {"answers_per_s_b256", "p99_single_ms", "max_abs_logit_diff_vs_cpu"}

    for tier in ("fast", "balanced", "accurate"):  # host path and device share per tier (CPU: all host + ORT)
        for batch in ("b256", "b32"):
            figures = result["tiers"][tier][batch]
            assert figures["answers_per_s"] > 0 and figures["host_us_per_row"] > 0
            assert figures["pipelined_answers_per_s"] > 0  # the service's batcher, finishing beside the models
            assert 0 < figures["device_busy_fraction"] < 1

    loop = result["torch_loop"]  # the plain PyTorch anchor, same answers, its own process (this venv's torch)
    assert loop["rows"] == 64 and loop["device"] == "cpu" and loop["single_p99_ms"] > 0
    assert loop["b256"]["answers_per_s"] > 0 and loop["b32"]["answers_per_s"] > 0
    assert set(result["vs_torch_loop"]) == {"b256", "b32"} and all(v > 0 for v in result["vs_torch_loop"].values())

    fp32, int8 = result["by_precision"]["fp32"], result["by_precision"]["int8"]
    assert fp32["qwk"] and all(-1 <= value <= 1 for splits in fp32["qwk"].values() for value in splits.values())
    assert int8["qwk"] and set(int8["qwk"]) <= set(fp32["qwk"])  # items of backbones without int8 are left out
    # measured although the export did not allow it; the same graph, so the very same scores
    assert [facts["allowed_by_export"] for facts in int8["detail"]["variant"].values() if "file" in facts] == [False]
    assert all(change == 0 for splits in result["int8_qwk_change_vs_fp32"].values() for change in splits.values())
    assert int8["answers_per_s_b256"] > 0 and int8["rss_mb_27"] > 50
    assert int8["max_abs_logit_diff_vs_cpu"] < 1e-5
    golden = fp32["detail"]["golden"]
    assert golden["max_abs_probability_diff_vs_cpu"] < 1e-5
    assert golden["max_abs_logit_diff_vs_export"] < 1e-3  # the service's own golden tolerance


def test_cuda_provider_options_reach_cuda_sessions_only() -> None:
    """The fp32-with-TF32 figures of a GPU run: CUDA sessions made inside get the options, CPU ones not."""
    with cuda_provider_options({"use_tf32": "1"}):
        chosen: list[Any] = list(onnx_runtime.providers("cuda"))
        assert chosen[0] == ("CUDAExecutionProvider", {"use_tf32": "1"})
        assert onnx_runtime.providers("cpu") == ["CPUExecutionProvider"]
    # the service's own: fp32 without TF32
    assert onnx_runtime.providers("cuda") == [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]


def _block(answers_per_s: float, p99_ms: float, diff: float, qwk: float, memory_mb: float | None) -> dict[str, Any]:
    memory = {n: {"after_batch": {"gpu_mb": memory_mb, "rss_mb": 900.0}} for n in ("27", "1000")}
    return {"performance": {"b256": {"answers_per_s": answers_per_s}, "b32": {"answers_per_s": answers_per_s / 4},
                            "single": {"p99_ms": p99_ms}, "switch_cold": {"p99_ms": 2 * p99_ms}},
            "memory": memory, "golden": {"max_abs_logit_diff_vs_cpu": diff},
            "qwk": {"asap-01": {"validation": qwk, "test": qwk}}}


def test_a_cuda_run_reports_fp16_first_and_judges_the_goals() -> None:
    """What the smoke path cannot show: on CUDA the headline is fp16 where it ran, goals are judged."""
    from bench.gpu_report import assemble, table

    blocks = {"fp32": _block(9_000, 12.0, 2e-3, 0.80, 700.0), "fp16": _block(25_000, 6.0, 8e-3, 0.79, 500.0),
              "fp32_tf32_on": _block(7_000, 14.0, 1e-5, 0.80, None)}
    manifest = {"items": {"asap-01": {"qwk": {"test": {"qwk_onnx": 0.80}, "validation": {"qwk_onnx": 0.81}}}}}
    result = assemble({"device": "NVIDIA H100 80GB HBM3", "device_kind": "cuda", "smoke": False, "errors": [],
                       "onnxruntime": {"version": "1.31.1"}}, blocks, "fp16", "cuda", manifest, whole_splits=True)
    assert result["precision"] == "fp16" and result["answers_per_s_b256"] == 25_000
    assert result["gpu_memory_mb_1000"] == 500.0 and result["goals_met"] == {
        "answers_per_s_b256": True, "p99_single_ms": True, "max_abs_logit_diff_vs_cpu": True}
    assert result["by_precision"]["fp32"]["goals_met"]["answers_per_s_b256"] is False
    assert result["fp16_qwk_change_vs_fp32"]["asap-01"]["test"] == pytest.approx(-0.01)
    assert result["fp16_mean_qwk_change_vs_fp32"]["validation"] == pytest.approx(-0.01)
    assert result["by_precision"]["fp32"]["qwk_minus_export_cpu"]["asap-01"]["validation"] == pytest.approx(-0.01)
    printed = table(result)
    assert "NVIDIA H100" in printed and "fp32_tf32_on" in printed and "25,000" in printed
