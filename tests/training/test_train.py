from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from tests.conftest import tiny_item
from training.artifacts import current_record, save_adapter
from training.backbones import resolve_backbone
from training.encoder import (
    TARGET_PRESETS,
    adapter_state,
    attach_lora,
    build_model,
    load_adapter_state,
    merge_lora,
)
from training.pipeline import encode_item, train_adapter
from training.trainer import TrainConfig, train_item


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[101, 7570, 2003, 1037, 102], [101, 2748, 102, 0, 0]])
    return ids, (ids != 0).long()


def test_trunk_then_head_equals_whole_model_and_merge_is_exact(tiny_backbone: Path) -> None:
    model = build_model(tiny_backbone, 1, 3, dropout=0.0).eval()
    attach_lora(model, TARGET_PRESETS["all-linear"], 4, 8)
    for parameter in model.parameters():
        if parameter.requires_grad:
            torch.nn.init.normal_(parameter, std=0.1)  # non-zero LoRA B so merging has work to do
    ids, mask = _batch()
    with torch.no_grad():
        whole = model(ids, mask)
        split = model.head(model.trunk(ids, mask), mask)
        merge_lora(model)
        merged = model(ids, mask)
    assert torch.equal(whole, split)
    assert torch.allclose(whole, merged, atol=1e-5)


def test_lora_training_lowers_loss_and_touches_only_the_item_module(tiny_backbone: Path) -> None:
    backbone = resolve_backbone(str(tiny_backbone))
    item = tiny_item()
    model = build_model(tiny_backbone, 1, 3)
    frozen_before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    config = TrainConfig(split_layer=1, max_epochs=6, patience=6, batch_size=8, learning_rate=5e-3)
    result = train_item(model, config, encode_item(item, backbone))
    losses = [record.train_loss for record in result.curve]
    assert losses[-1] < losses[0]
    assert all(torch.equal(frozen_before[k], v) for k, v in model.trunk.state_dict().items())
    assert {"validation", "test"} <= set(result.metrics)


def test_bf16_steps_train_like_fp32_and_keep_fp32_weights(tiny_backbone: Path) -> None:
    """The small recipe's bf16 steps (autocast around forward and backward only): the loss falls as in fp32,
    the trained weights stay fp32 (what is exported), and the trunk cache is untouched by autocast (a first
    version that cached the trunk under autocast never learned: validation loss stayed at ln(classes))."""
    backbone = resolve_backbone(str(tiny_backbone))
    config = TrainConfig(split_layer=1, max_epochs=6, patience=6, batch_size=8, learning_rate=5e-3)
    curves = {}
    for precision in ("fp32", "bf16"):
        model = build_model(tiny_backbone, 1, 3)
        result = train_item(model, replace(config, step_precision=precision), encode_item(tiny_item(), backbone))
        curves[precision] = [record.train_loss for record in result.curve]
        assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    assert curves["bf16"][-1] < curves["bf16"][0]
    assert abs(curves["bf16"][0] - curves["fp32"][0]) < 0.05  # the same first epoch within bf16's rounding
    assert "step_precision" not in config.as_dict()  # fp32, the default: committed fingerprints unchanged


def test_adapter_save_load_gives_identical_logits(tiny_backbone: Path, tmp_path: Path) -> None:
    config = TrainConfig(split_layer=1, max_epochs=2, batch_size=8)
    saved, trained = train_adapter(tiny_item(), tmp_path, config, str(tiny_backbone))
    assert trained and saved["version"] == "v1"
    again, trained_again = train_adapter(tiny_item(), tmp_path, config, str(tiny_backbone))
    assert not trained_again and again["version"] == "v1"  # current: skipped
    record = current_record(tmp_path, "tiny-item")
    assert record is not None
    model = build_model(tiny_backbone, 1, 3).eval()
    attach_lora(model, TARGET_PRESETS["all-linear"], 8, 16)
    load_adapter_state(model, record.state())
    twin = build_model(tiny_backbone, 1, 3).eval()
    attach_lora(twin, TARGET_PRESETS["all-linear"], 8, 16)
    load_adapter_state(twin, adapter_state(model))
    ids, mask = _batch()
    with torch.no_grad():
        assert torch.equal(model(ids, mask), twin(ids, mask))
    assert (record.folder / "MODEL_CARD.md").read_text().startswith("# tiny-item (v1)")


def test_member_tag_is_an_extra_member_that_leaves_the_own_adapter(tiny_backbone: Path, tmp_path: Path) -> None:
    from training.ensemble_members import adapter_candidate, item_adapters

    config = TrainConfig(split_layer=1, max_epochs=1, batch_size=8)
    train_adapter(tiny_item(), tmp_path, config, str(tiny_backbone))
    tagged, _ = train_adapter(tiny_item(), tmp_path, replace(config, seed=14), str(tiny_backbone), member_tag="s14")
    assert tagged["item_id"] == "tiny-item-s14" and tagged["source_item"] == "tiny-item"
    own = current_record(tmp_path, "tiny-item")
    assert own is not None and own.version == "v1"  # not replaced by the tagged one
    records = item_adapters(tmp_path, "tiny-item")
    assert [record.item_id for record in records] == ["tiny-item", "tiny-item-s14"]  # own adapter first
    labels = [adapter_candidate(record, tiny_item(), str(tiny_backbone)).label for record in records]
    assert labels[1] == labels[0] + "/s14"  # same trunk, told apart in the ensemble kind


def test_new_version_keeps_the_old_one(tiny_backbone: Path, tmp_path: Path) -> None:
    model = build_model(tiny_backbone, 1, 3)
    attach_lora(model, TARGET_PRESETS["qv"], 8, 16)
    config = {"item_id": "x", "score_range": {"low": 0, "high": 2}, "backbone": {"name": "t"}}
    first = save_adapter(tmp_path, config, adapter_state(model), {}, "")
    second = save_adapter(tmp_path, config, adapter_state(model), {}, "")
    assert (first.version, second.version) == ("v1", "v2")
    assert (tmp_path / "x" / "v1" / "adapter.safetensors").is_file()
    latest = current_record(tmp_path, "x")
    assert latest is not None and latest.version == "v2"
