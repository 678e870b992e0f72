"""`python -m bench.fusion_trial [--device cpu|cuda]`: does ONNX Runtime's offline transformer fusion make
the trunk faster?

Fuses the exported trunk (Attention, BiasGelu, SkipLayerNormalization) with onnxruntime.transformers'
optimizer, checks it against the unfused trunk on real answers, and times both with the service's session
options (ORT_ENABLE_ALL, no spinning) on the same padded batches, alternating. On CUDA the optimizer fuses
for the GPU and both graphs are also timed in fp16 (weights converted, inputs/outputs kept), each against
its own precision's plain graph. Writes bench/results/fusion.json (CPU) or fusion_cuda.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from core.manifest import read_manifest
from core.onnx_runtime import TextEncoder, length_sorted_batches, load_session, pad, run_trunk
from training.asap import load_asap_item

RESULTS = Path(__file__).resolve().parent / "results"
NUM_HEADS = 12  # attention heads of both shipped backbones (MiniLM-L6, multilingual E5-small)
Batch = tuple[np.ndarray, np.ndarray]


def compare(plain_path: Path, fused_path: Path, batches: list[Batch], threads: int, device: str,
            repeats: int) -> dict[str, Any]:
    """Largest hidden-state difference over real tokens, then alternating timed passes over every batch."""
    plain = load_session(plain_path, threads, arena=True, device=device)
    fused = load_session(fused_path, threads, arena=True, device=device)
    worst = 0.0
    for ids, mask in batches:
        difference = np.abs(run_trunk(plain, ids, mask) - run_trunk(fused, ids, mask)) * mask[..., None]
        worst = max(worst, float(difference.max()))
    seconds: dict[str, list[float]] = {"plain": [], "fused": []}
    for _ in range(repeats):
        for name, session in (("plain", plain), ("fused", fused)):
            started = time.perf_counter()
            for ids, mask in batches:
                run_trunk(session, ids, mask)
            seconds[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {"providers": plain.get_providers()[:1], "max_abs_hidden_diff": worst, "median_s": median,
            "fused_over_plain": median["fused"] / median["plain"]}


def engine_comparison(artifacts: Path, threads: int, device: str, repeats: int) -> dict[str, Any]:
    """The service's engine (single heads) with the fused and the plain trunk, alternating, on 160 mixed
    ASAP test answers: what the fusion changes end to end, heads and Python included."""
    import random

    from app.backend import AnswerRow, score_now
    from app.onnx_backend import OnnxBackend
    from app.settings import Settings

    rng = random.Random(0)
    items = [f"asap-{number:02d}" for number in range(1, 11)]
    answers = {item: [text for text, _ in load_asap_item(item).test] for item in items}
    rows = [AnswerRow(item, rng.choice(answers[item])) for item in (rng.choice(items) for _ in range(160))]
    engines = {name: OnnxBackend(Settings(artifacts=artifacts, threads=threads, device=device, ensembles=False,
                                          fused_trunk="on" if name == "fused" else "off"))
               for name in ("fused", "plain")}
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():
        engine.warm_up()
        score_now(engine, rows[:64])
    for _ in range(repeats):
        for name, engine in engines.items():
            started = time.perf_counter()
            score_now(engine, rows)
            seconds[name].append(time.perf_counter() - started)
    per_s = {name: len(rows) / statistics.median(values) for name, values in seconds.items()}
    return {"answers": len(rows), "answers_per_s": per_s, "fused_over_plain_time": per_s["plain"] / per_s["fused"]}


def main(argv: list[str] | None = None) -> int:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.optimizer import optimize_model

    parser = argparse.ArgumentParser(prog="python -m bench.fusion_trial", description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=Path("build/onnx"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/fusion[_cuda].json")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.artifacts)
    backbone = manifest["backbone"]
    trunk = args.artifacts / manifest["trunk"]["file"]
    work = Path(tempfile.mkdtemp())
    model = optimize_model(str(trunk), model_type="bert", num_heads=NUM_HEADS, hidden_size=int(backbone["hidden"]),
                           opt_level=0, use_gpu=args.device == "cuda")
    model.save_model_to_file(str(work / "fused.onnx"))
    encoder = TextEncoder(args.artifacts / manifest["tokenizer"]["file"], int(backbone["max_length"]),
                          str(backbone.get("text_prefix", "")))
    rows = [ids for ids, _ in encoder.encode([text for text, _ in load_asap_item("asap-01").test[:256]])]
    batches = [pad([rows[i] for i in batch]) for batch in length_sorted_batches([len(r) for r in rows], 32)]
    result: dict[str, Any] = {
        "trunk": str(trunk), "device": args.device, "answers": len(rows), "batch": 32, "threads": args.threads,
        "fused_operators": {k: v for k, v in model.get_fused_operator_statistics().items() if v},
        "fp32": compare(trunk, work / "fused.onnx", batches, args.threads, args.device, args.repeats),
    }
    if args.device == "cuda":  # fp16 is the GPU's fast path: plain and fused, each converted the same way
        for name, source in (("plain16.onnx", trunk), ("fused16.onnx", work / "fused.onnx")):
            onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(work / name))
        result["fp16"] = compare(work / "plain16.onnx", work / "fused16.onnx", batches, args.threads, args.device,
                                 args.repeats)
    if (args.artifacts / "items" / "asap-01").is_dir():  # the engine A/B needs the ASAP items
        result["engine"] = engine_comparison(args.artifacts, args.threads, args.device, args.repeats)
    out = args.out or RESULTS / ("fusion_cuda.json" if args.device == "cuda" else "fusion.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
