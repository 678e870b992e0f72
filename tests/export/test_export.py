from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from core.onnx_runtime import AdapterHead, MergedHead, load_session, pad
from export.pipeline import ExportOptions, export_all
from export.validate import ValidationError


def _export(adapters: Path, out: Path, backbone: Path, head_format: str = "ort-adapter") -> dict:  # type: ignore[type-arg]
    options = ExportOptions(adapters, out, head_format, backbone=str(backbone), log=lambda _: None)  # type: ignore[arg-type]
    return export_all(options)


@pytest.mark.parametrize("head_format", ["ort-adapter", "merged"])
def test_export_validates_and_items_differ(tiny_adapters: Path, tiny_backbone: Path, tmp_path: Path,
                                           head_format: str) -> None:
    manifest = _export(tiny_adapters, tmp_path, tiny_backbone, head_format)
    assert set(manifest["items"]) == {"item-a", "item-b"}
    for entry in manifest["items"].values():
        assert entry["max_abs_logit_diff"] <= 1e-4
        assert entry["format"] == head_format
    trunk = load_session(tmp_path / "trunk.onnx", 1, arena=False)
    ids, mask = pad([[101, 7570, 2003, 102], [101, 2748, 102]])
    hidden = trunk.run(["hidden_states"], {"input_ids": ids, "attention_mask": mask})[0]
    heads = []
    for item_id in ("item-a", "item-b"):
        path = tmp_path / manifest["items"][item_id]["file"]
        if head_format == "merged":
            heads.append(MergedHead(path, 1))
        else:
            shared = load_session(tmp_path / manifest["adapter_head"]["file"], 1, arena=False)
            heads.append(AdapterHead(shared, path))
    logits_a, logits_b = (head.logits(hidden, mask) for head in heads)
    # An adapter silently not applied would give both items the same logits.
    assert np.abs(logits_a - logits_b).max() > 1e-3
    golden = manifest["items"]["item-a"]["golden"]
    assert len(golden["texts"]) == len(golden["logits"]) == 8


def test_adapter_head_equals_merged_head(tiny_adapters: Path, tiny_backbone: Path, tmp_path: Path) -> None:
    adapter_manifest = _export(tiny_adapters, tmp_path / "a", tiny_backbone, "ort-adapter")
    merged_manifest = _export(tiny_adapters, tmp_path / "m", tiny_backbone, "merged")
    hidden = np.random.default_rng(0).normal(size=(3, 5, 64)).astype(np.float32)
    mask = np.ones((3, 5), dtype=np.int64)
    mask[2, 3:] = 0
    shared = load_session(tmp_path / "a" / adapter_manifest["adapter_head"]["file"], 1, arena=False)
    via_adapter = AdapterHead(shared, tmp_path / "a" / adapter_manifest["items"]["item-b"]["file"])
    merged = MergedHead(tmp_path / "m" / merged_manifest["items"]["item-b"]["file"], 1)
    assert np.abs(via_adapter.logits(hidden, mask) - merged.logits(hidden, mask)).max() < 1e-4


def test_export_is_incremental(tiny_adapters: Path, tiny_backbone: Path, tmp_path: Path) -> None:
    first = _export(tiny_adapters, tmp_path, tiny_backbone)
    trunk_mtime = (tmp_path / "trunk.onnx").stat().st_mtime_ns
    logged: list[str] = []
    options = ExportOptions(tiny_adapters, tmp_path, backbone=str(tiny_backbone), log=logged.append)
    second = export_all(options)
    assert (tmp_path / "trunk.onnx").stat().st_mtime_ns == trunk_mtime
    assert logged == [f"{first['primary_backbone']} trunk: current"]
    assert first["items"] == second["items"]


def test_mismatched_or_corrupt_adapter_is_refused(tiny_adapters: Path, tiny_backbone: Path, tmp_path: Path) -> None:
    broken = tmp_path / "adapters"
    shutil.copytree(tiny_adapters, broken)
    config_path = broken / "item-a" / "v1" / "config.json"
    config = json.loads(config_path.read_text())
    config["backbone"]["weights_sha256"] = "0" * 64
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValidationError, match="trained on backbone weights"):
        _export(broken, tmp_path / "out1", tiny_backbone)
    shutil.rmtree(broken)
    shutil.copytree(tiny_adapters, broken)
    (broken / "item-b" / "v1" / "adapter.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"adapter\.safetensors"):
        _export(broken, tmp_path / "out2", tiny_backbone)
    shutil.rmtree(broken)
    shutil.copytree(tiny_adapters, broken)
    config_path = broken / "item-a" / "v1" / "config.json"
    config = json.loads(config_path.read_text())
    config["labels"] = [0, 1, 2, 3]  # classifier in the file has 3 rows
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="shape"):
        _export(broken, tmp_path / "out3", tiny_backbone)


def test_ort_rejects_nothing_silently() -> None:
    assert "CPUExecutionProvider" in ort.get_available_providers()


@pytest.mark.parametrize("head_format", ["ort-adapter", "merged"])
def test_trunk_then_head_equals_one_full_merged_model(tiny_adapters: Path, tiny_backbone: Path, tmp_path: Path,
                                                      head_format: str) -> None:
    """The split is exact: trunk.onnx -> head equals the whole LoRA-merged model exported as one graph."""
    import warnings

    import torch

    from training.artifacts import current_record
    from training.encoder import TARGET_PRESETS, attach_lora, build_model, load_adapter_state, merge_lora

    manifest = _export(tiny_adapters, tmp_path / "split", tiny_backbone, head_format)
    record = current_record(tiny_adapters, "item-a")
    assert record is not None
    config, train = record.config, record.config["train"]
    model = build_model(tiny_backbone, config["split_layer"], len(config["labels"]))
    attach_lora(model, TARGET_PRESETS[train["targets"]], train["rank"], train["alpha"])
    load_adapter_state(model, record.state())
    merge_lora(model)
    model.eval()
    ids, mask = pad([[101, 7570, 2003, 2748, 102], [101, 2748, 102]])
    full_path = tmp_path / "full.onnx"
    seq = {0: "batch", 1: "seq"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(ids), torch.from_numpy(mask)), str(full_path),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": seq, "attention_mask": seq}, opset_version=17, dynamo=False)
    whole = load_session(full_path, 1, arena=False).run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    trunk = load_session(tmp_path / "split" / "trunk.onnx", 1, arena=False)
    hidden = trunk.run(["hidden_states"], {"input_ids": ids, "attention_mask": mask})[0]
    path = tmp_path / "split" / manifest["items"]["item-a"]["file"]
    head = (MergedHead(path, 1) if head_format == "merged" else
            AdapterHead(load_session(tmp_path / "split" / manifest["adapter_head"]["file"], 1, arena=False), path))
    assert np.abs(head.logits(hidden, mask) - whole).max() < 1e-4
