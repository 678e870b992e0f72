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
