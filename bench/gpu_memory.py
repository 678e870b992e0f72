"""Memory with N items resident, one fresh process per (precision, N): `python -m bench.gpu_memory PLAN OUT`.

A process of its own because ONNX Runtime's CUDA arena never shrinks: a figure taken after other engines
ran in the same process would include their peaks. The child loads the engine on an exporter-shaped folder
of N items (bench.fixtures: the real items plus perturbed copies), brings every head into the cache, scores
one mixed batch, and reports GPU memory (the driver's figure for this process, or else the change of the
GPU's used memory since the child started) and RSS, after loading and after the batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.errors import ScoringError
from bench.gpu_engine import Device, Precision, make_engine, score_classes
from bench.gpu_env import gpu_used_mb, preload_cuda_libraries, process_gpu_mb, rss_mb
from bench.workload import load_workload


def _snapshot(device: Device, gpu_before: float | None) -> dict[str, Any]:
    snapshot: dict[str, Any] = {"rss_mb": rss_mb()}
    if device == "cuda":
        used = gpu_used_mb()
        snapshot["gpu_process_mb"] = process_gpu_mb(os.getpid())
        snapshot["gpu_used_change_mb"] = used - gpu_before if used is not None and gpu_before is not None else None
        snapshot["gpu_mb"] = (snapshot["gpu_process_mb"] if snapshot["gpu_process_mb"] is not None
                              else snapshot["gpu_used_change_mb"])
    return snapshot


def measure(plan: dict[str, Any]) -> dict[str, Any]:
    device: Device = plan["device"]
    gpu_before = None
    if device == "cuda":
        preload_cuda_libraries()
        gpu_before = gpu_used_mb()
    backend, _ = make_engine(Path(plan["folder"]), device, plan["precision"], plan["threads"])
    workload = load_workload(plan["n"])
    refused: dict[str, str] = {}  # e.g. a golden-answer check the device fails: the item stays out, noted
    for item in workload.items:
        try:
            backend.cache.get(backend.artifacts.items[item])
        except ScoringError as error:
            refused[item] = str(error)
    loaded = _snapshot(device, gpu_before)
    rows = [row for row in workload.mixed(4 * plan["batch"], seed=21) if row[0] not in refused][: plan["batch"]]
    score_classes(backend, rows)
    return {"n": plan["n"], "resident_items": len(backend.cache), "refused": refused, "loaded": loaded,
            "after_batch": _snapshot(device, gpu_before)}


def memory_with(folder: Path, device: Device, precision: Precision, n: int, threads: int,
                batch: int = 256, timeout_s: float = 180) -> dict[str, Any]:
    """Runs the child; its failure is raised with the end of its output."""
    plan = {"folder": str(folder), "device": device, "precision": precision, "n": n, "threads": threads,
            "batch": batch}
    with tempfile.TemporaryDirectory() as scratch:
        plan_path, out_path = Path(scratch) / "plan.json", Path(scratch) / "out.json"
        plan_path.write_text(json.dumps(plan))
        done = subprocess.run([sys.executable, "-m", "bench.gpu_memory", str(plan_path), str(out_path)],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory child ({precision}, N={n}) failed: {(done.stdout + done.stderr)[-1500:]}")
        result: dict[str, Any] = json.loads(out_path.read_text())
        return result


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(measure(plan)))


if __name__ == "__main__":
    main()
