"""The machine's FP32 matrix-multiply peak and the trunk's achieved GFLOP/s, in one process.

`python -m bench.peak ARTIFACTS THREADS OUT.json`. FLOPs are counted from the trunk's shapes on the padded
batch it actually runs (linears + attention matmuls; LayerNorm, softmax and GELU are not counted, so the
fraction is a lower bound on how busy the cores are).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.workload import load_workload


def sgemm_peak_gflops(size: int = 2048, repeats: int = 12) -> float:
    """Best of several large float32 matmuls (numpy's BLAS, all threads allowed by the environment)."""
    rng = np.random.default_rng(0)
    left = rng.standard_normal((size, size), dtype=np.float32)
    right = rng.standard_normal((size, size), dtype=np.float32)
    left @ right
    best = min(_timed_matmul(left, right) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed_matmul(left: np.ndarray, right: np.ndarray) -> float:
    started = time.perf_counter()
    left @ right
    return time.perf_counter() - started


def ort_gemm_ceiling(tokens: int, hidden: int, intermediate: int, threads: int, repeats: int = 10) -> dict[str, Any]:
    """ONNX Runtime's own MatMul on exactly the trunk's GEMM shapes (one layer's four, K = hidden or
    intermediate), timed alone: the most the trunk could reach if nothing but its matmuls ran."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from core.onnx_runtime import session_options

    rng = np.random.default_rng(0)
    shapes = [(hidden, 3 * hidden), (hidden, hidden), (hidden, intermediate), (intermediate, hidden)]
    flops = seconds = 0.0
    for k, n in shapes:
        weight = numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "W")
        graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "gemm",
                                  [helper.make_tensor_value_info("X", TensorProto.FLOAT, [tokens, k])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [tokens, n])], [weight])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
        session = ort.InferenceSession(model.SerializeToString(), session_options(threads, arena=True),
                                       providers=["CPUExecutionProvider"])
        feed = {"X": rng.standard_normal((tokens, k), dtype=np.float32)}
        for _ in range(2):
            session.run(None, feed)
        best = min(_timed_run(session, feed) for _ in range(repeats))
        flops += 2.0 * tokens * k * n
        seconds += best
    return {"tokens": tokens, "gflops_per_s": flops / seconds / 1e9}


def _timed_run(session: Any, feed: dict[str, np.ndarray]) -> float:
    started = time.perf_counter()
    session.run(None, feed)
    return time.perf_counter() - started


def encoder_flops(batch: int, seq: int, layers: int, hidden: int, intermediate: int) -> float:
    linears = 2 * seq * (4 * hidden * hidden + 2 * hidden * intermediate)
    attention = 2 * 2 * seq * seq * hidden  # QK^T and (softmax)V
    return float(batch * layers * (linears + attention))


def trunk_gflops(artifacts: Path, file: str, threads: int, batch: int = 32, repeats: int = 20) -> dict[str, Any]:
    from core.onnx_runtime import TextEncoder, load_session, pad

    manifest = json.loads((artifacts / "manifest.json").read_text())
    session = load_session(artifacts / file, threads, arena=True)
    encoder = TextEncoder(artifacts / manifest["tokenizer"]["file"], int(manifest["backbone"]["max_length"]),
                          str(manifest["backbone"].get("text_prefix", "")))
    workload = load_workload(10)
    rng = random.Random(3)
    texts = [rng.choice(workload.texts_of(rng.choice(workload.items))) for _ in range(batch)]
    ids, mask = pad([row for row, _ in encoder.encode(texts)])
    feeds = {"input_ids": ids, "attention_mask": mask}
    for _ in range(3):
        session.run(["hidden_states"], feeds)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(["hidden_states"], feeds)
        times.append(time.perf_counter() - started)
    median = float(np.median(times))
    backbone = manifest["backbone"]
    hidden = int(backbone["hidden"])
    flops = encoder_flops(batch, ids.shape[1], int(backbone["split_layer"]), hidden, 4 * hidden)
    return {"file": file, "batch": batch, "padded_seq": int(ids.shape[1]),
            "real_token_fraction": float(mask.mean()), "median_ms": median * 1000,
            "gflop": flops / 1e9, "gflops_per_s": flops / median / 1e9}


def main() -> None:
    artifacts, threads, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    repeats = 8 if "--quick" in sys.argv[4:] else 20
    result: dict[str, Any] = {"threads": threads, "cpu_count": os.cpu_count()}
    result["sgemm_peak_gflops"] = sgemm_peak_gflops()
    manifest = json.loads((artifacts / "manifest.json").read_text())
    result["trunk_fp32"] = trunk_gflops(artifacts, manifest["trunk"]["file"], threads, repeats=repeats)
    int8 = manifest.get("int8")
    if int8:
        # int8 does the same model FLOPs in integer units: "fp32-equivalent" GFLOP/s, not comparable to peak.
        result["trunk_int8"] = trunk_gflops(artifacts, int8["file"], threads, repeats=repeats)
    trunk = result["trunk_fp32"]
    hidden = int(manifest["backbone"]["hidden"])
    result["ort_gemm_ceiling"] = ort_gemm_ceiling(trunk["batch"] * trunk["padded_seq"], hidden, 4 * hidden, threads)
    result["sgemm_peak_gflops_after"] = sgemm_peak_gflops()  # a noisy neighbour shows up as a gap
    peak = max(result["sgemm_peak_gflops"], result["sgemm_peak_gflops_after"])
    result["trunk_fraction_of_peak"] = trunk["gflops_per_s"] / peak
    result["ort_gemm_ceiling"]["fraction_of_peak"] = result["ort_gemm_ceiling"]["gflops_per_s"] / peak
    result["trunk_fraction_of_gemm_ceiling"] = trunk["gflops_per_s"] / result["ort_gemm_ceiling"]["gflops_per_s"]
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
