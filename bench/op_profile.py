"""`python -m bench.op_profile`: where the engine's CPU time goes, per ONNX operator type.

ONNX Runtime's own profiler (SessionOptions.enable_profiling) on the graphs the CPU serves — the plain trunk
(the fused one gains nothing there: bench/results/fusion.json) and the per-item head graph — over mixed-item
batches of 32 real ASAP test
answers, split as the engine splits them (length buckets, one head run per item). Node times are summed by
operator type; the share of each, and of the trunk against the heads, is what the summary quotes. Writes
bench/results/op_profile.json.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.length_buckets import length_buckets
from core.manifest import load_artifacts
from core.onnx_runtime import AdapterHead, TextEncoder, pad, run_trunk, session_options
from training.asap import load_asap_item

RESULT = Path(__file__).resolve().parent / "results" / "op_profile.json"


def profiled(path: Path, threads: int, arena: bool) -> ort.InferenceSession:
    options = session_options(threads, arena)
    options.enable_profiling = True
    options.profile_file_prefix = f"/tmp/op_profile_{path.stem}"
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def node_times(session: ort.InferenceSession) -> dict[str, float]:
    """Microseconds per operator type over every run of the session (its profile file, then removed)."""
    profile = Path(session.end_profiling())
    by_type: dict[str, float] = defaultdict(float)
    for event in json.loads(profile.read_text()):
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            by_type[event["args"]["op_name"]] += float(event["dur"])
    profile.unlink()
    return dict(by_type)


def profile(folder: Path, threads: int, batches: int = 12) -> dict[str, Any]:
    """The profile of `batches` mixed batches of 32 (see the module's docstring)."""
    artifacts = load_artifacts(folder, tier="fast")
    files = artifacts.backbones["minilm-en"]
    trunk_path = files.trunk_path
    assert files.adapter_head_path is not None
    trunk, heads = profiled(trunk_path, threads, True), profiled(files.adapter_head_path, threads, False)
    encoder = TextEncoder(files.tokenizer_path, files.max_length, files.text_prefix)
    specs = [spec for spec in artifacts.items.values() if spec.backbone == "minilm-en"]
    runners = {spec.item_id: AdapterHead(heads, spec.serving_members[0].path) for spec in specs}
    answers = {spec.item_id: [text for text, _ in load_asap_item(spec.item_id[:7]).test] for spec in specs}
    rng = random.Random(0)
    rows = [(item, rng.choice(answers[item])) for item in (rng.choice(list(runners)) for _ in range(32 * batches))]
    for start in range(0, len(rows), 32):
        batch = rows[start : start + 32]
        ids = [row for row, _ in encoder.encode([text for _, text in batch])]
        order = sorted(range(len(batch)), key=lambda i: len(ids[i]))
        for bucket in length_buckets([len(ids[i]) for i in order], 32):
            chunk = order[bucket]
            token_ids, mask = pad([ids[i] for i in chunk])
            hidden = run_trunk(trunk, token_ids, mask)
            for item in sorted({batch[i][0] for i in chunk}):
                positions = [p for p, i in enumerate(chunk) if batch[i][0] == item]
                runners[item].logits(np.ascontiguousarray(hidden[positions]), np.ascontiguousarray(mask[positions]))
    times = {"trunk": node_times(trunk), "heads": node_times(heads)}
    total = sum(sum(part.values()) for part in times.values())
    by_type: dict[str, float] = defaultdict(float)
    for part in times.values():
        for op, micros in part.items():
            by_type[op] += micros
    return {
        "trunk_graph": trunk_path.name, "threads": threads, "answers": len(rows), "batch": 32,
        "node_ms": {name: round(sum(part.values()) / 1000, 1) for name, part in times.items()},
        "share_by_op": {op: round(micros / total, 4) for op, micros in sorted(by_type.items(), key=lambda kv: -kv[1])},
        "by_graph": {name: {op: round(micros / 1000, 1) for op, micros in sorted(part.items(), key=lambda kv: -kv[1])}
                     for name, part in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.op_profile", description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=Path("build/onnx"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12)
    args = parser.parse_args(argv)
    result = profile(args.artifacts, args.threads, args.batches)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: result[key] for key in ("trunk_graph", "node_ms")}, indent=1))
    for op, share in list(result["share_by_op"].items())[:10]:
        print(f"{op:32} {share:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
