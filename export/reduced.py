"""Reduced-precision trunks: int8 for the CPU, fp16 for the GPU, each allowed only by its measured QWK change.

On the CPU the per-item heads cost more than the trunk (60 % of node time, bench/results/op_profile.json), so
int8 also quantizes the backbone's shared per-item head graph: its frozen weights only. The LoRA and classifier
tensors each item's .onnx_adapter file supplies stay fp32 graph inputs, so one int8 head graph serves every item
and the QWK change is measured with both int8 graphs together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from core.fingerprints import file_sha256
from core.onnx_runtime import AdapterHead, HeadRunner, MergedHead, load_session, trunk_head_logits
from export.options import MAX_MEAN_QWK_DROP, ExportOptions, item_texts
from export.validate import qwk_of
from training.artifacts import load_record
from training.tokenize import encode_texts


def _write_reduced_trunk(variant: str, source: Path, path: Path) -> None:
    if variant == "int8":  # CPU: dynamic per-channel int8 weights
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(source), str(path), per_channel=True, weight_type=QuantType.QInt8)
        return
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # GPU: fp16 weights and activations; the graph's inputs/outputs keep their types, so the service and
    # the heads (fp32) feed and read it unchanged.
    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(path))


def _write_int8_head(source: Path, path: Path) -> None:
    """The head graph with its frozen MatMul weights int8 (dynamic, per channel); what adapters override stays.

    ORT's quantizer rewrites the classifier Gemm into MatMul + Add on a transposed weight and drops
    overridable initializers from the inputs; both break the adapter files, so the original Gemm and every
    original input are put back (the quantizer offers no switch for either)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    original = onnx.load(str(source))
    graph = original.graph
    overridable = {value.name for value in graph.input}
    frozen = {initializer.name for initializer in graph.initializer} - overridable
    nodes = [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in frozen]
    quantize_dynamic(str(source), str(path), per_channel=True, weight_type=QuantType.QInt8, nodes_to_quantize=nodes)
    quantized = onnx.load(str(path))
    gemms = [node for node in graph.node if node.op_type == "Gemm"]
    rewritten = {f"{gemm.name}_MatMul" for gemm in gemms} | {f"{gemm.name}_Add" for gemm in gemms}
    kept = [node for node in quantized.graph.node if node.name not in rewritten]
    del quantized.graph.node[:]
    quantized.graph.node.extend([*kept, *gemms])  # the classifier reads the last tensors: order stays topological
    gemm_weights = {gemm.input[1] for gemm in gemms}
    for initializer in [i for i in quantized.graph.initializer if i.name in gemm_weights]:
        quantized.graph.initializer.remove(initializer)
    quantized.graph.initializer.extend(i for i in graph.initializer if i.name in gemm_weights)
    present = {value.name for value in quantized.graph.input}
    quantized.graph.input.extend(value for value in graph.input if value.name not in present)
    onnx.save(quantized, str(path))


def shared_head_session(entry: dict[str, Any], options: ExportOptions) -> ort.InferenceSession | None:
    """The backbone's per-item head graph, where it has one (ort-adapter format)."""
    if "adapter_head" not in entry:
        return None
    return load_session(options.out / entry["adapter_head"]["file"], options.threads, arena=False)


def item_head(item: dict[str, Any], shared: ort.InferenceSession | None, options: ExportOptions) -> HeadRunner:
    return (AdapterHead(shared, options.out / item["file"]) if shared is not None
            else MergedHead(options.out / item["file"], options.threads))


def qwk_with_trunk(trunk: ort.InferenceSession, head: HeadRunner, item_id: str, item: dict[str, Any], tokenizer: Any,
                prefix: str, options: ExportOptions) -> float | None:
    """The item's test QWK with `trunk` in place of the exported one; None where its answers are not at hand."""
    texts = item_texts(load_record(options.adapters / item_id / item["version"]), options)
    if "test" not in texts:
        return None
    answers, truth = texts["test"]
    return qwk_of(trunk_head_logits(trunk, head, encode_texts(tokenizer, answers, prefix)), truth, item["thresholds"])


def reduced_variant(variant: str, items: dict[str, dict[str, Any]], folder: Path, tokenizer: Any,
                     entry: dict[str, Any], options: ExportOptions, source: Path) -> dict[str, Any]:
    """An int8 (CPU) or fp16 (GPU) trunk; its test-QWK change per item decides whether serving may use it.

    The change is measured here with ONNX Runtime's CPU kernels; a GPU's fp16 kernels round differently
    (fp16 accumulation), so an fp16 figure is the graph's precision loss, not a CUDA measurement."""
    out = options.out
    path = folder / f"trunk.{variant}.onnx"
    _write_reduced_trunk(variant, source, path)
    trunk8 = load_session(path, options.threads, arena=True)
    shared = shared_head_session(entry, options)
    head_path: Path | None = None
    if variant == "int8" and shared is not None:
        head_path = out / entry["adapter_head"]["file"].replace(".onnx", ".int8.onnx")
        _write_int8_head(out / entry["adapter_head"]["file"], head_path)
        shared = load_session(head_path, options.threads, arena=False)
    changes: dict[str, float] = {}
    for item_id, item in items.items():
        qwk8 = qwk_with_trunk(trunk8, item_head(item, shared, options), item_id, item, tokenizer,
                           entry["backbone"]["text_prefix"], options)
        if qwk8 is None:
            continue
        item["qwk"]["test"][f"qwk_{variant}"] = qwk8
        changes[item_id] = qwk8 - item["qwk"]["test"]["qwk_onnx"]
    mean_change = float(np.mean(list(changes.values()))) if changes else float("nan")
    allowed = bool(changes) and -mean_change <= MAX_MEAN_QWK_DROP
    graphs = "trunk + head" if head_path else "trunk"
    options.log(f"{entry['backbone']['name']} {variant} {graphs}: mean test-QWK change {mean_change:+.4f} "
                f"-> allowed={allowed}")
    return {
        "file": str(path.relative_to(out)), "sha256": file_sha256(path), "bytes": path.stat().st_size,
        "test_qwk_change": changes, "mean_test_qwk_change": mean_change, "allowed": allowed,
        "rule": f"serving may use {variant} only when the mean test-QWK drop is <= {MAX_MEAN_QWK_DROP}",
        "measured_on": "CPUExecutionProvider", "made_from": source.name,
        **({"head": {"file": str(head_path.relative_to(out)), "sha256": file_sha256(head_path),
                     "bytes": head_path.stat().st_size}} if head_path is not None else {}),
    }
