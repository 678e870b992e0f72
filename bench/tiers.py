"""Each cost tier measured the same way: `python -m bench.tiers --artifacts build/onnx`.

For every tier (SCORER_TIER) a fresh service serves the artifacts (duplicate cache off, so every answer pays for
its inference); all 5,224 ASAP test answers go through POST /batch (500 per request, items interleaved) once to
warm up and once timed. Per tier: mean and per-item test QWK by our own client (checked against the figure the
exporter recorded for what that tier serves), answers/s through HTTP on this machine, and trunk and head runs
per answer. Test answers choose nothing: each tier's configuration was chosen on validation (export/tiers.py)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.qwk_over_http import score_over_http, test_rows
from bench.server import Server
from core.manifest import TIERS, item_spec, read_manifest, tier_entry
from training.metrics import quadratic_weighted_kappa


def _recorded(entry: dict[str, Any]) -> float | None:
    """The test QWK the exporter measured through ONNX Runtime for this entry (full validation only)."""
    qwk = entry.get("qwk", {}).get("test", {}).get("qwk_onnx")
    return float(qwk) if qwk is not None else None


def measure_tier(artifacts: Path, tier: str, rows: list[dict[str, Any]], truth: dict[str, list[int]],
                 per_request: int) -> dict[str, Any]:
    manifest = read_manifest(artifacts)
    env = {"SCORER_ARTIFACTS": str(artifacts), "SCORER_TIER": tier, "SCORER_DUPLICATE_CACHE_ENTRIES": "0",
           "SCORER_LOG_LEVEL": "warning"}
    server = Server(env, Path(tempfile.mkdtemp()) / "server.log")
    try:
        server.wait_ready(timeout=600)
        score_over_http(server.url, rows, per_request)  # warm: every member loaded and checked
        served, seconds = score_over_http(server.url, rows, per_request)
    finally:
        server.stop()
    items: dict[str, Any] = {}
    for item_id, scores in truth.items():
        entry = tier_entry(manifest["items"][item_id], tier)
        spec = item_spec(artifacts, item_id, manifest["items"][item_id], manifest, tier)
        predicted = [served[f"{item_id}:{n}"] for n in range(len(scores))]
        qwk = quadratic_weighted_kappa(scores, predicted, spec.labels)
        items[item_id] = {"qwk": round(qwk, 4), "recorded": _recorded(entry), "members": spec.member_names,
                          "trunk_runs": len(spec.backbones), "head_runs": sum(m.on_trunk for m in spec.serving_members),
                          "lexical": any(not m.on_trunk for m in spec.serving_members)}
    return {"mean_qwk": round(float(np.mean([item["qwk"] for item in items.values()])), 4),
            "answers_per_second": round(len(rows) / seconds, 1), "seconds": round(seconds, 2),
            "trunk_runs_per_answer": float(np.mean([item["trunk_runs"] for item in items.values()])),
            "head_runs_per_answer": float(np.mean([item["head_runs"] for item in items.values()])),
            "items": items}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tiers", description=__doc__)
    parser.add_argument("--artifacts", default="build/onnx", type=Path)
    parser.add_argument("--tiers", default=",".join(TIERS))
    parser.add_argument("--rows-per-request", type=int, default=500)
    parser.add_argument("--out", default="bench/results/tiers.json", type=Path)
    args = parser.parse_args(argv)
    rows, truth = test_rows()
    report: dict[str, Any] = {"answers": len(rows), "tiers": {}}
    for tier in args.tiers.split(","):
        report["tiers"][tier] = measure_tier(args.artifacts, tier, rows, truth, args.rows_per_request)
        figures = report["tiers"][tier]
        print(f"{tier}: mean test QWK {figures['mean_qwk']:.4f}, {figures['answers_per_second']} answers/s, "
              f"{figures['trunk_runs_per_answer']} trunk runs / answer", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
