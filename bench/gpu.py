"""`python -m bench.gpu [--device cuda|cpu] [--out bench/results/gpu.json] [--smoke]`: the engine on one GPU.

The service's own engine (app.onnx_backend.OnnxBackend, Settings device="cuda") at fp32 and at the device's
reduced precision (fp16 on CUDA; int8 on CPU, where it was exported): throughput on mixed-item batches of
256 and 32, each cost tier's answers/s with the host µs per row and the device-busy fraction (bench/gpu_tiers.py),
sequential single answers, single answers whose head is not cached, memory with 27 and 1000
items resident (fresh processes), logits against a CPU fp32 session on every item's golden answers, and
per-item QWK on the ASAP validation and test answers, and the anchor: a plain PyTorch loop on the same answers
and device (bench/torch_loop.py), the engine's answers/s over it per batch size. Under 5 minutes on one GPU
(`make gpu-check`).

`--device cpu --smoke` runs the same path on the CPU with small counts (CI: tests/bench/test_gpu_check.py).
A failing step is recorded under "errors" (exit status 1) and the others still run: a GPU session is rare.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from bench.fixtures import BenchArtifacts
from bench.gpu_engine import Device, Precision, cuda_provider_options, make_engine, reduced_precision, with_variant
from bench.gpu_env import device_facts, ort_facts, preload_cuda_libraries
from bench.gpu_measure import asap_answers, golden_outputs
from bench.gpu_memory import memory_with
from bench.gpu_report import assemble, table
from bench.gpu_steps import FULL, SMOKE, attempt, measure_precision
from bench.gpu_tiers import loop_ratios, mixed_rows, tier_figures
from bench.torch_loop import default_python, run_loop
from bench.workload import load_workload
from core.manifest import load_artifacts

PERF_ITEMS = 27  # the bench's mix (10 real items, 17 perturbed copies), as in `python -m bench`


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    device: Device = args.device
    sizes = SMOKE if args.smoke else FULL
    errors: list[str] = []
    result: dict[str, Any] = {"device": None, "device_kind": device, "smoke": args.smoke,
                              "artifacts": str(args.artifacts)}
    if device == "cuda":  # before any CUDA session, in this process (the memory children do their own)
        result["cuda_libraries"] = preload_cuda_libraries()
    machine = device_facts(device)
    result.update(device=machine["name"], machine=machine, onnxruntime=ort_facts(), errors=errors,
                  settings={"threads": args.threads, "max_batch_rows": 256, "sizes": asdict(sizes)})
    source = load_artifacts(args.artifacts, tier="fast")  # single heads, as the engine here serves them
    reduced = reduced_precision(device)
    blocks: dict[str, dict[str, Any]] = {"fp32": {}, reduced: {}}
    try:
        blocks[reduced]["variant"] = with_variant(source, reduced)[1]
    except LookupError as missing:
        blocks[reduced] = {"skipped": str(missing)}
        if device == "cuda":
            errors.append(str(missing))
    precisions: list[Precision] = ["fp32"] if "skipped" in blocks[reduced] else ["fp32", reduced]
    bench = BenchArtifacts(args.artifacts, args.work)
    folders = {n: bench.engine_dir(n) for n in sorted({PERF_ITEMS, *sizes.memory_ns})}
    for precision in precisions:  # memory first, each in a fresh process: the parent has no CUDA arena yet
        blocks[precision]["memory"] = {
            str(n): attempt(errors, f"{precision} memory N={n}",
                            partial(memory_with, folders[n], device, precision, n, args.threads, sizes.memory_batch))
            for n in sizes.memory_ns}
    reference = None
    if made := attempt(errors, "CPU fp32 reference", lambda: make_engine(args.artifacts, "cpu", "fp32", args.threads)):
        reference = attempt(errors, "CPU fp32 golden outputs", partial(golden_outputs, made[0], sizes.check_items))
        del made
    answers = attempt(errors, "ASAP answers", lambda: asap_answers(
        list(source.items)[: sizes.check_items], sizes.qwk_splits, sizes.qwk_answers))
    workload = load_workload(PERF_ITEMS)
    measure = partial(measure_precision, device=device, artifacts=args.artifacts, perf_folder=folders[PERF_ITEMS],
                      threads=args.threads, sizes=sizes, workload=workload, reference=reference, answers=answers,
                      errors=errors)
    for precision in precisions:
        blocks[precision].update(measure(precision, precision))
    # The other head path, for comparison: per-item head runs where the default batches them, and back.
    other = "off" if device == "cuda" else "on"
    for precision in precisions:
        blocks[f"{precision}_grouped_{other}"] = measure(f"{precision}_grouped_{other}", precision, grouped=other)
    # Per cost tier (ensembles included): answers/s, host µs per row and device-busy fraction at batch 256 and 32.
    rows = mixed_rows(sizes.tier_rows)
    result["tiers"] = attempt(errors, "tiers", partial(tier_figures, args.artifacts, device, args.threads, rows))
    # The anchor: a plain PyTorch loop on the same answers and device (bench/torch_loop.py), in its own process.
    result["torch_loop"] = attempt(errors, "plain PyTorch loop", partial(
        run_loop, [(row.item_id, row.text) for row in rows], device, args.torch_python, args.threads,
        sizes.single_requests))
    result["vs_torch_loop"] = loop_ratios(result["tiers"], result["torch_loop"])
    if device == "cuda":  # the service runs fp32 without TF32 (core.onnx_runtime.providers); what TF32 would give
        with cuda_provider_options({"use_tf32": "1"}):
            blocks["fp32_tf32_on"] = measure("fp32_tf32_on", "fp32")
    assemble(result, blocks, reduced, device, source.manifest, whole_splits=sizes.qwk_answers is None)
    result["seconds"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu.json"))
    parser.add_argument("--smoke", action="store_true", help="small counts, no 1000-item memory (CI)")
    parser.add_argument("--artifacts", type=Path, default=Path("build/onnx"))
    parser.add_argument("--work", type=Path, default=Path("build/bench-gpu"),
                        help="the 27- and 1000-item folders (bench.fixtures), reused while the export is unchanged")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--torch-python", default=default_python(),
                        help="a Python with torch for the plain PyTorch loop (default: .venv's where it exists)")
    args = parser.parse_args(argv)
    if not (args.artifacts / "manifest.json").is_file():
        raise SystemExit(f"no export under {args.artifacts}: run `make export` first")
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"written: {args.out} ({result['seconds']:.0f} s)")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
