"""A backbone with MPNet's relative-position attention bias exports and serves like the others: a tiny random
MPNet (2 layers, hidden 64) trained on a tiny item, exported in both head formats and with the batched head
graph, each checked against PyTorch by the exporter, then scored through OnnxBackend on every head path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.backend import AnswerRow, Scored, score_now
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from tests.conftest import tiny_evidence_rows, tiny_item


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import MPNetConfig, MPNetModel

    from training.backbones import resolve_backbone

    folder = tmp_path_factory.mktemp("tiny-mpnet")
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=30527, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=130, relative_attention_num_buckets=32)
    model = MPNetModel(config)
    with torch.no_grad():  # a visible bias: a head graph that dropped it would differ from PyTorch
        model.encoder.relative_attention_bias.weight.normal_(0, 2.0)
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(resolve_backbone("minilm-en").path / "tokenizer.json", folder / "tokenizer.json")
    return folder


@pytest.mark.parametrize("head_format", ["ort-adapter", "merged"])
def test_mpnet_exports_and_serves(tiny_mpnet: Path, tmp_path: Path, head_format: str) -> None:
    from export.pipeline import ExportOptions, export_all
    from training.pipeline import train_adapter
    from training.trainer import TrainConfig

    adapters, out = tmp_path / "adapters", tmp_path / "onnx"
    item = tiny_item("mp-item")
    train_adapter(item, adapters, TrainConfig(split_layer=1, max_epochs=2, batch_size=8, seed=3,  # type: ignore[arg-type]
                                              learning_rate=5e-3), str(tiny_mpnet))
    texts = {"mp-item": {"validation": ([t for t, _ in item.validation], [s for _, s in item.validation]),
                         "test": ([t for t, _ in item.test], [s for _, s in item.test])}}
    # validate="full": every validation and test answer through ONNX Runtime against PyTorch (1e-4).
    manifest = export_all(ExportOptions(adapters, out, head_format=head_format, backbone=str(tiny_mpnet),  # type: ignore[arg-type]
                                        item_texts=texts, log=lambda _: None,
                                        evidence_rows={"mp-item": tiny_evidence_rows("mp-item")}))
    entry = manifest["items"]["mp-item"]
    assert entry["max_abs_logit_diff"] <= 1e-4 and entry["validated_on"]["test"] == len(item.test)
    assert entry["evidence"]["answers"] == len(item.train)
    rows = [AnswerRow("mp-item", text) for text, _ in item.test]
    outcomes = {}
    for grouped in ("off", "on"):
        if grouped == "on" and head_format == "merged":
            continue  # the batched graph serves ort-adapter heads
        backend = OnnxBackend(Settings(artifacts=out, threads=1, grouped_heads=grouped))
        backend.warm_up()  # loads the trunk; the item's first load checks its golden answers
        outcomes[grouped] = [outcome for outcome in score_now(backend, rows)]
        assert all(isinstance(outcome, Scored) for outcome in outcomes[grouped])
    if "on" in outcomes:
        assert np.allclose([o.probabilities for o in outcomes["on"]], [o.probabilities for o in outcomes["off"]],  # type: ignore[union-attr]
                           atol=1e-4)
    golden = json.loads((out / "manifest.json").read_text())["items"]["mp-item"]["golden"]
    assert len(golden["texts"]) == len(golden["logits"]) > 0
