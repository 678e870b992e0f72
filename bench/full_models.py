"""The paper's baseline: one complete ONNX model per item (trunk and head in one graph).

Real items: the item's LoRA merged into the backbone, exported as one graph (needs torch, so it runs in its
own process: `python -m bench.full_models OUT_DIR`). Synthetic items: a real item's full graph with every
weight perturbed, as a separately fine-tuned model would differ everywhere. Full fine-tuning checkpoints
are not kept (reports/full_ft/ holds their metrics only); a graph of the same shapes costs the same.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from bench.workload import source_item
from training.asap import ASAP_ITEMS

OPSET = 17


def export_real(out: Path, adapters: Path = Path("adapters")) -> None:
    import torch

    from training.artifacts import current_record
    from training.backbones import resolve_backbone
    from training.encoder import TARGET_PRESETS, attach_lora, build_model, load_adapter_state, merge_lora

    out.mkdir(parents=True, exist_ok=True)
    for item_id in ASAP_ITEMS:
        path = out / f"{item_id}.onnx"
        if path.exists():
            continue
        record = current_record(adapters, item_id)
        if record is None:
            raise SystemExit(f"no trained adapter for {item_id} under {adapters}")
        config = record.config
        backbone = resolve_backbone(config["backbone"]["name"])
        model = build_model(backbone.path, config["split_layer"], len(config["labels"]))
        train = config["train"]
        attach_lora(model, TARGET_PRESETS[train["targets"]], train["rank"], train["alpha"])
        load_adapter_state(model, record.state())
        merge_lora(model)
        model.eval()
        ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]])
        seq = {0: "batch", 1: "seq"}
        partial = path.with_suffix(".partial")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (ids, (ids != 0).long()), str(partial),
                              input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              dynamic_axes={"input_ids": seq, "attention_mask": seq, "logits": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
        partial.rename(path)  # a killed run leaves no half-written model behind
        print(f"full model {item_id}: {path.stat().st_size / 1e6:.0f} MB", flush=True)


def make_synthetic(out: Path, item: str, scale: float = 0.01) -> Path:
    """A perturbed copy of the real item's full graph (every float weight times 1 + scale * noise)."""
    import onnx
    from onnx import numpy_helper

    path = out / f"{item}.onnx"
    if path.exists():
        return path
    graph_model = onnx.load(str(out / f"{source_item(item)}.onnx"))
    rng = np.random.default_rng(int(item.removeprefix("syn-")))
    for tensor in graph_model.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if value.dtype == np.float32 and value.size > 1:
            noisy = value * (1 + scale * rng.standard_normal(value.shape, dtype=np.float32))
            tensor.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), tensor.name))
    partial = path.with_suffix(".partial")
    onnx.save(graph_model, str(partial))
    partial.rename(path)
    return path


if __name__ == "__main__":
    export_real(Path(sys.argv[1]))
