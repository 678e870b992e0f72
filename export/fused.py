"""The fused trunk: ONNX Runtime's transformer optimizer applied offline to the exported trunk (Attention,
SkipLayerNormalization, BiasGelu and LayerNormalization fusions; contrib ops that both the CPU and the CUDA
execution providers run). Served by default wherever it validates (core.manifest.BackboneFiles.fused_path).

optimum's ORTOptimizer applies these same fusions but wraps an ORTModel built from a Hugging Face config and
export; our trunk is a split model (embeddings + the layers below S) with no such config, so the optimizer
it wraps (onnxruntime.transformers.optimizer) is called directly.

Validation, like every other graph the service runs: each item's golden answers through the fused trunk and
its head against PyTorch's logits (the export's tolerance); with `--validate full` also the test-QWK change on
every test answer, allowed by the reduced trunks' rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.fingerprints import file_sha256
from core.manifest import item_spec
from core.onnx_runtime import load_session, trunk_head_logits
from export.options import MAX_MEAN_QWK_DROP, ExportOptions
from export.reduced import item_head, qwk_with_trunk, shared_head_session
from export.validate import LOGIT_TOLERANCE
from training.tokenize import encode_texts


def write_fused_trunk(source: Path, path: Path, heads: int, hidden: int) -> dict[str, int]:
    """The fused graph at `path`; returns how many of each fusion it holds."""
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level 0: the offline fusions only; ORT's own graph optimisations still run when a session loads it.
    model = optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    model.save_model_to_file(str(path))
    return {name: int(count) for name, count in model.get_fused_operator_statistics().items() if count}


def fused_variant(items: dict[str, dict[str, Any]], folder: Path, tokenizer: Any, entry: dict[str, Any],
                  heads: int, options: ExportOptions, old: dict[str, Any], fresh: set[str] | None) -> dict[str, Any]:
    """old: the previous export's fused entry; fresh: the items exported anew, or None when the trunk was.
    Items whose heads and trunk are unchanged keep their earlier results (add-item stays quick)."""
    out = options.out
    path = folder / "trunk.fused.onnx"
    reuse = (fresh is not None and path.is_file() and file_sha256(path) == old.get("sha256")
             and "checked" in old)
    fusions = old["fusions"] if reuse else write_fused_trunk(folder / "trunk.onnx", path, heads,
                                                             int(entry["backbone"]["hidden"]))
    kept = old if reuse else {}
    golden: dict[str, float] = {k: v for k, v in kept.get("golden_logit_diff", {}).items() if k in items}
    changes: dict[str, float] = {k: v for k, v in kept.get("test_qwk_change", {}).items() if k in items}
    checked: dict[str, str] = {k: v for k, v in kept.get("checked", {}).items() if k in items}  # golden | full
    full = options.validate == "full"
    # An item is checked on its test answers only where its own head was (a `make serve` export checks golden
    # answers only, and add-item leaves those heads as they are).
    fully = {item_id for item_id, item in items.items() if full and "test" in item.get("qwk", {})}
    todo = [item_id for item_id in items if item_id in (fresh or set()) or item_id not in checked
            or (item_id in fully and checked[item_id] != "full")]
    trunk = load_session(path, options.threads, arena=True)
    shared = shared_head_session(entry, options)
    prefix = entry["backbone"]["text_prefix"]
    for item_id in todo:
        item = items[item_id]
        head = item_head(item, shared, options)
        spec = item_spec(out, item_id, item)
        golden[item_id] = 0.0
        checked[item_id] = "full" if item_id in fully else "golden"
        if spec.golden_texts:
            logits = trunk_head_logits(trunk, head, encode_texts(tokenizer, spec.golden_texts, prefix))
            golden[item_id] = float(np.abs(logits - np.asarray(spec.golden_logits)).max())
        fused_qwk = (qwk_with_trunk(trunk, head, item_id, item, tokenizer, prefix, options)
                     if item_id in fully else None)
        if fused_qwk is not None:
            changes[item_id] = fused_qwk - item["qwk"]["test"]["qwk_onnx"]
    worst = max(golden.values(), default=0.0)
    mean_change = float(np.mean(list(changes.values()))) if changes else 0.0
    allowed = worst <= LOGIT_TOLERANCE and -mean_change <= MAX_MEAN_QWK_DROP
    if todo:
        options.log(f"{entry['backbone']['name']} fused trunk ({', '.join(f'{k} {v}' for k, v in fusions.items())}): "
                    f"golden max |logit diff| {worst:.1e}" + (f", mean test-QWK change {mean_change:+.4f}"
                                                              if changes else "") + f" -> allowed={allowed}")
    return {"file": str(path.relative_to(out)), "sha256": file_sha256(path), "bytes": path.stat().st_size,
            "fusions": fusions, "max_abs_golden_logit_diff": worst, "golden_logit_diff": golden,
            "test_qwk_change": changes, "checked": checked, "allowed": allowed,
            "rule": f"served when every golden logit is within {LOGIT_TOLERANCE:.0e} of PyTorch and (full "
                    f"validation) the mean test-QWK drop is <= {MAX_MEAN_QWK_DROP}"}
