"""int8 (CPU) and fp16 (GPU) trunks: built, measured per item against fp32, and chosen only where allowed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.onnx_backend import OnnxBackend
from app.settings import Settings
from core.onnx_runtime import load_session, pad
from export.pipeline import ExportOptions, export_all
from tests.conftest import tiny_item


@pytest.fixture(scope="module")
def reduced_export(tiny_adapters: Path, tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reduced")
    texts = {}
    for item_id in ("item-a", "item-b"):
        item = tiny_item(item_id)
        texts[item_id] = {name: ([t for t, _ in rows], [s for _, s in rows])
                          for name, rows in (("validation", item.validation), ("test", item.test))}
    export_all(ExportOptions(tiny_adapters, out, backbone=str(tiny_backbone), int8=True, fp16=True,
                             item_texts=texts, log=lambda _: None))
    return out


def test_both_variants_are_measured_per_item(reduced_export: Path) -> None:
    manifest = json.loads((reduced_export / "manifest.json").read_text())
    trunk_bytes = manifest["trunk"]["bytes"]
    for variant in ("int8", "fp16"):
        entry = manifest[variant]
        assert set(entry["test_qwk_change"]) == {"item-a", "item-b"}
        assert entry["allowed"] == (-entry["mean_test_qwk_change"] <= 0.005)
        assert (reduced_export / entry["file"]).stat().st_size < 0.7 * trunk_bytes
        for item in manifest["items"].values():
            assert f"qwk_{variant}" in item["qwk"]["test"]
    # the fp16 graph keeps fp32 inputs/outputs and stays close to fp32
    ids, mask = pad([[101, 7570, 2003, 102], [101, 2748, 102]])
    feeds = {"input_ids": ids, "attention_mask": mask}
    full = load_session(reduced_export / "trunk.onnx", 1, arena=False).run(["hidden_states"], feeds)[0]
    half = load_session(reduced_export / manifest["fp16"]["file"], 1, arena=False).run(["hidden_states"], feeds)[0]
    assert half.dtype == np.float32 and np.abs(half - full).max() < 0.05
    # the GPU's fp16 is made from the fused graph (validated in this export), the CPU's int8 from the plain one
    assert manifest["fused"]["allowed"] and manifest["fp16"]["made_from"] == "trunk.fused.onnx"
    assert manifest["int8"]["made_from"] == "trunk.onnx"


def test_the_int8_head_graph_keeps_what_adapters_override(reduced_export: Path, tmp_path: Path) -> None:
    """The int8 per-item head graph: smaller, every input of the fp32 graph still there (each item's LoRA and
    classifier tensors come from its adapter file), and each item's logits close to the fp32 graph's."""
    import onnx

    from app.backend import AnswerRow, Scored, score_now
    from core.manifest import load_artifacts
    from core.onnx_runtime import AdapterHead, run_trunk

    manifest = json.loads((reduced_export / "manifest.json").read_text())
    head8 = reduced_export / manifest["int8"]["head"]["file"]
    head32 = reduced_export / manifest["adapter_head"]["file"]
    assert head8.stat().st_size < 0.7 * head32.stat().st_size
    inputs = {path: {value.name for value in onnx.load(str(path), load_external_data=False).graph.input}
              for path in (head8, head32)}
    assert inputs[head8] == inputs[head32]
    ops = {node.op_type for node in onnx.load(str(head8)).graph.node}
    assert "DynamicQuantizeLinear" in ops and "Gemm" in ops  # frozen weights int8; the classifier as exported
    ids, mask = pad([[101, 7570, 2003, 102], [101, 2748, 102]])
    hidden = run_trunk(load_session(reduced_export / "trunk.onnx", 1, arena=False), ids, mask)
    artifacts = load_artifacts(reduced_export)
    for spec in artifacts.items.values():
        adapter = spec.serving_members[0].path
        full = AdapterHead(load_session(head32, 1, arena=False), adapter).logits(hidden, mask)
        small = AdapterHead(load_session(head8, 1, arena=False), adapter).logits(hidden, mask)
        assert np.abs(full - small).max() < 0.1 * max(1.0, float(np.abs(full).max()))
    copy = tmp_path / "onnx"  # served as if the tiny model's QWK change allowed int8 (its own verdict aside)
    shutil.copytree(reduced_export, copy)
    manifest["int8"]["allowed"] = manifest["backbones"][manifest["primary_backbone"]]["int8"]["allowed"] = True
    (copy / "manifest.json").write_text(json.dumps(manifest))
    backend = OnnxBackend(Settings(artifacts=copy, threads=1, device="cpu", precision="int8"))
    trunk = next(iter(backend.trunks.values()))
    assert trunk.shared_head is not None and Path(trunk.shared_head._model_path) == copy / head8.name
    outcomes = score_now(backend, [AnswerRow(item_id, "acid rain") for item_id in artifacts.items])
    assert all(isinstance(outcome, Scored) for outcome in outcomes)


def test_service_takes_a_variant_only_where_allowed_and_for_its_device(reduced_export: Path,
                                                                       tmp_path: Path) -> None:
    copy = tmp_path / "onnx"
    shutil.copytree(reduced_export, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for allowed in (False, True):
        for key in ("int8", "fp16"):
            manifest[key]["allowed"] = allowed
            manifest["backbones"][manifest["primary_backbone"]][key]["allowed"] = allowed
        (copy / "manifest.json").write_text(json.dumps(manifest))
        auto = OnnxBackend(Settings(artifacts=copy, threads=1, device="cpu", precision="auto"))
        assert next(iter(auto.trunks.values())).fp32 is not allowed  # auto on CPU: int8 where allowed
        if allowed:
            OnnxBackend(Settings(artifacts=copy, threads=1, device="cpu", precision="int8"))
        else:
            with pytest.raises(RuntimeError, match="does not allow the int8 trunk"):
                OnnxBackend(Settings(artifacts=copy, threads=1, device="cpu", precision="int8"))
    with pytest.raises(RuntimeError, match="not for device cpu"):
        OnnxBackend(Settings(artifacts=copy, threads=1, device="cpu", precision="fp16"))
