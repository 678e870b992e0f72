"""`python -m bench.gpu`'s JSON shape and printed table: the headline figures per precision, the goals."""

from __future__ import annotations

from typing import Any

from bench.gpu_measure import qwk_change
from core.manifest import single_entry

# Goals of the GPU path (issue #21), judged on the CUDA device only.
GOALS: dict[str, tuple[str, float]] = {
    "answers_per_s_b256": (">=", 20_000.0),
    "p99_single_ms": ("<=", 10.0),
    "max_abs_logit_diff_vs_cpu": ("<=", 1e-2),
}
MEMORY_NS = ("27", "1000")
ROWS = [  # (field, label, format) of the printed table
    ("answers_per_s_b256", "answers/s, mixed items, batch 256", "{:,.0f}"),
    ("answers_per_s_b32", "answers/s, mixed items, batch 32", "{:,.0f}"),
    ("p99_single_ms", "p99 single answer (ms)", "{:.2f}"),
    ("switch_cold_p99_ms", "p99 single answer, head not cached (ms)", "{:.2f}"),
    ("gpu_memory_mb_27", "GPU memory, 27 items (MB)", "{:,.0f}"),
    ("gpu_memory_mb_1000", "GPU memory, 1000 items (MB)", "{:,.0f}"),
    ("rss_mb_27", "host RSS, 27 items (MB)", "{:,.0f}"),
    ("rss_mb_1000", "host RSS, 1000 items (MB)", "{:,.0f}"),
    ("max_abs_logit_diff_vs_cpu", "max |logit - CPU fp32| (golden)", "{:.1e}"),
]


def figures(block: dict[str, Any]) -> dict[str, Any]:
    """The headline fields of one precision's measurements (None where a step failed or was not run)."""
    perf = block.get("performance") or {}
    out: dict[str, Any] = {
        "answers_per_s_b256": (perf.get("b256") or {}).get("answers_per_s"),
        "answers_per_s_b32": (perf.get("b32") or {}).get("answers_per_s"),
        "p99_single_ms": (perf.get("single") or {}).get("p99_ms"),
        "switch_cold_p99_ms": (perf.get("switch_cold") or {}).get("p99_ms"),
    }
    memory = block.get("memory") or {}
    for n in MEMORY_NS:
        after = (memory.get(n) or {}).get("after_batch") or {}
        out[f"gpu_memory_mb_{n}"] = after.get("gpu_mb")
        out[f"rss_mb_{n}"] = after.get("rss_mb")
    out["max_abs_logit_diff_vs_cpu"] = (block.get("golden") or {}).get("max_abs_logit_diff_vs_cpu")
    return out


def goals_met(values: dict[str, Any]) -> dict[str, bool | None]:
    met: dict[str, bool | None] = {}
    for field, (direction, bound) in GOALS.items():
        value = values.get(field)
        met[field] = None if value is None else (value >= bound if direction == ">=" else value <= bound)
    return met


def vs_export(qwk: dict[str, dict[str, float]], manifest: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Device fp32 QWK minus the QWK the export measured on the CPU (whole splits only): ~0 unless the
    device's kernels change scores."""
    out: dict[str, dict[str, float]] = {}
    for item, splits in qwk.items():
        exported = single_entry(manifest["items"].get(item, {})).get("qwk", {})  # the bench runs single heads
        out[item] = {split: value - exported[split]["qwk_onnx"] for split, value in splits.items()
                     if "qwk_onnx" in exported.get(split, {})}
    return out


def assemble(result: dict[str, Any], blocks: dict[str, dict[str, Any]], reduced: str, device: str,
             manifest: dict[str, Any], whole_splits: bool) -> dict[str, Any]:
    """Headline fields (the precision the device would serve: fp16 on CUDA where it ran), then every
    precision's figures under by_precision."""
    by_precision: dict[str, Any] = {}
    base_qwk = blocks.get("fp32", {}).get("qwk")
    for precision, block in blocks.items():
        entry: dict[str, Any] = {**figures(block), "qwk": block.get("qwk")}
        if precision != "fp32" and block.get("qwk") and base_qwk:
            entry["qwk_change_vs_fp32"] = qwk_change(block["qwk"], base_qwk)
        if precision == "fp32" and base_qwk and whole_splits:
            entry["qwk_minus_export_cpu"] = vs_export(base_qwk, manifest)
        entry["goals_met"] = goals_met(entry) if device == "cuda" else None
        entry["detail"] = block
        by_precision[precision] = entry
    ran = reduced in blocks and "skipped" not in blocks[reduced] and "fp32" in blocks
    headline = reduced if device == "cuda" and ran else "fp32"
    change = by_precision.get(reduced, {}).get("qwk_change_vs_fp32") or {}
    result.update({"precision": headline, **{k: v for k, v in by_precision[headline].items()
                                              if k not in ("qwk", "detail", "qwk_change_vs_fp32")}})
    # fp16's keys always exist (None on the CPU, which has no fp16 engine); int8's where it ran
    result["fp16_qwk_change_vs_fp32"] = result["fp16_mean_qwk_change_vs_fp32"] = None
    result[f"{reduced}_qwk_change_vs_fp32"] = change.get("per_item")
    result[f"{reduced}_mean_qwk_change_vs_fp32"] = change.get("mean")
    result["goals"] = {field: f"{direction} {bound:g}" for field, (direction, bound) in GOALS.items()}
    result["by_precision"] = by_precision
    return result


def table(result: dict[str, Any]) -> str:
    precisions = list(result["by_precision"])
    lines = [f"device: {result['device']} ({result['device_kind']}, onnxruntime {result['onnxruntime']['version']})"
             + ("  [smoke: small counts]" if result["smoke"] else ""),
             f"{'':44}" + "".join(f"{p:>20}" for p in precisions) + f"{'goal':>12}"]
    for field, label, fmt in ROWS:
        cells = [result["by_precision"][p].get(field) for p in precisions]
        goal = result["goals"].get(field, "")
        lines.append(f"{label:44}" + "".join(f"{'-' if v is None else fmt.format(v):>20}" for v in cells)
                     + f"{goal:>12}")
    for precision in precisions:
        mean = (result["by_precision"][precision].get("qwk_change_vs_fp32") or {}).get("mean")
        if mean:
            lines.append(f"{precision} mean QWK change vs fp32 on the device: "
                         + ", ".join(f"{split} {value:+.4f}" for split, value in mean.items()))
    for tier, batches in (result.get("tiers") or {}).items():  # fp32 engines, ensembles included
        lines.append(f"tier {tier:9}" + "; ".join(
            f"batch {batch[1:]}: {f['answers_per_s']:,.0f} answers/s stage by stage, "
            f"{f.get('pipelined_answers_per_s', float('nan')):,.0f} through the batcher, "
            f"host {f['host_us_per_row']:.0f} us/row, "
            f"device busy {f['device_busy_fraction']:.0%}" for batch, f in batches.items()))
    loop, ratios = result.get("torch_loop"), result.get("vs_torch_loop") or {}
    if loop:
        lines.append("plain PyTorch loop, same answers: " + "; ".join(
            f"batch {batch[1:]}: {loop[batch]['answers_per_s']:,.0f} answers/s (engine, fast tier: "
            f"{ratios.get(batch, float('nan')):.2f}x)" for batch in ("b256", "b32") if batch in loop)
            + f"; p99 single {loop['single_p99_ms']:.1f} ms")
    lines += [f"ERROR {error}" for error in result["errors"]]
    return "\n".join(lines)
