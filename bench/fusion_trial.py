"""`python -m bench.fusion_trial`: does ONNX Runtime's offline transformer fusion make the trunk faster?

Fuses the exported trunk (Attention, BiasGelu, SkipLayerNormalization) with onnxruntime.transformers'
optimizer, checks it against the unfused trunk on real answers, and times both with the service's session
options (ORT_ENABLE_ALL, no spinning) on the same padded batches, alternating. Writes bench/results/fusion.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from core.manifest import read_manifest
from core.onnx_runtime import TextEncoder, length_sorted_batches, load_session, pad, run_trunk
from training.asap import load_asap_item

RESULT = Path(__file__).resolve().parent / "results" / "fusion.json"
NUM_HEADS = 12  # attention heads of both shipped backbones (MiniLM-L6, multilingual E5-small)


def main(argv: list[str] | None = None) -> int:
    from onnxruntime.transformers.optimizer import optimize_model

    parser = argparse.ArgumentParser(prog="python -m bench.fusion_trial", description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=Path("build/onnx"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    manifest = read_manifest(args.artifacts)
    backbone = manifest["backbone"]
    trunk = args.artifacts / manifest["trunk"]["file"]
    fused_path = Path(tempfile.mkdtemp()) / "trunk.fused.onnx"
    model = optimize_model(str(trunk), model_type="bert", num_heads=NUM_HEADS, hidden_size=int(backbone["hidden"]),
                           opt_level=0)
    model.save_model_to_file(str(fused_path))
    encoder = TextEncoder(args.artifacts / manifest["tokenizer"]["file"], int(backbone["max_length"]),
                          str(backbone.get("text_prefix", "")))
    rows = [ids for ids, _ in encoder.encode([text for text, _ in load_asap_item("asap-01").test[:256]])]
    batches = [pad([rows[i] for i in batch]) for batch in length_sorted_batches([len(r) for r in rows], 32)]
    plain = load_session(trunk, args.threads, arena=True)
    fused = load_session(fused_path, args.threads, arena=True)
    worst = 0.0
    for ids, mask in batches:
        difference = np.abs(run_trunk(plain, ids, mask) - run_trunk(fused, ids, mask)) * mask[..., None]
        worst = max(worst, float(difference.max()))
    seconds: dict[str, list[float]] = {"plain": [], "fused": []}
    for _ in range(args.repeats):
        for name, session in (("plain", plain), ("fused", fused)):
            started = time.perf_counter()
            for ids, mask in batches:
                run_trunk(session, ids, mask)
            seconds[name].append(time.perf_counter() - started)
    result = {
        "trunk": str(trunk), "answers": len(rows), "batch": 32, "threads": args.threads,
        "fused_operators": {k: v for k, v in model.get_fused_operator_statistics().items() if v},
        "max_abs_hidden_diff": worst,
        "median_s": {name: statistics.median(values) for name, values in seconds.items()},
    }
    result["fused_over_plain"] = result["median_s"]["fused"] / result["median_s"]["plain"]
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
