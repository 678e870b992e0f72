"""Headline ratios and the written summary, from a results dict shaped like a real run's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.summary import headline, write_summary

MB = 1024 * 1024


def _latency(p50: float) -> dict[str, Any]:
    return {"p50_ms": p50, "p99_ms": 2 * p50, "mean_ms": p50, "n": 3, "samples_ms": [p50, p50, 2 * p50]}


def _run(system: str, n: int, rss_mb: float, p50: float, single: float, mixed: float) -> dict[str, Any]:
    return {"system": system, "n": n, "resident_items": n, "rss_base_bytes": 100 * MB,
            "rss_loaded_bytes": rss_mb * MB, "rss_after_traffic_bytes": rss_mb * MB, "startup_s": 0.5,
            "load_items_s": 0.1, "switch_cold": _latency(1.0), "switch_warm": _latency(0.01),
            "latency_switching": _latency(p50), "throughput_single": {"answers_per_s": single},
            "throughput_mixed": {"answers_per_s": mixed}, "agreement_scores": None}


def _results() -> dict[str, Any]:
    full = _run("full", 27, 2000, 10.0, 100, 50)
    full["budgeted"] = {"latency_switching": _latency(40.0), "capacity": 1}
    runs = {"engine-N27": _run("engine", 27, 150, 8.0, 200, 190), "full-N27": full,
            "naive-N27": _run("naive", 27, 400, 30.0, 60, 38)}
    peak = {"sgemm_peak_gflops": 100.0, "sgemm_peak_gflops_after": 90.0, "trunk_fraction_of_peak": 0.5,
            "trunk_fp32": {"batch": 32, "median_ms": 20.0, "gflops_per_s": 50.0, "padded_seq": 64,
                           "real_token_fraction": 0.7}}
    return {"mode": "quick", "threads": 2, "batch": 32, "runs": runs, "peak": peak, "seconds": 12.0}


def test_headline_ratios_and_goals() -> None:
    head = headline(_results())
    assert head["n"] == 27
    assert head["memory_ratio_27"] == pytest.approx(150 / 2000)
    assert head["latency_vs_full_p50"] == pytest.approx(8 / 40)  # against the memory-budgeted full models
    assert head["latency_vs_full_resident_p50"] == pytest.approx(8 / 10)
    assert head["throughput_mixed_over_single"] == pytest.approx(190 / 200)
    assert head["throughput_vs_naive"] == pytest.approx(190 / 38)
    assert head["goals_met"]["memory_ratio_27"] is True
    assert head["goals_met"]["trunk_fraction_of_peak"] is False
    assert head["goals_met"]["switch_warm_p99_ms"] is True


def test_summary_and_plots_are_written(tmp_path: Path) -> None:
    results = _results()
    results["headline"] = headline(results)
    write_summary(results, tmp_path, "quick")
    text = (tmp_path / "quick_summary.md").read_text()
    assert "| memory_ratio_27 | 0.075 | ≤ 0.1 | yes |" in text
    assert "| trunk_fraction_of_peak | 0.500 | ≥ 0.8 | no |" in text
    assert (tmp_path / "quick_scaling.png").stat().st_size > 10_000
    assert (tmp_path / "quick_latency_hist.png").stat().st_size > 10_000
