"""Domain adaptation: BERT's masking rule, and the committed low-rank update merged into the backbone equals
the adapted model it was learned in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.fingerprints import file_sha256
from training.domain import DomainConfig, MaskedLM, delta_state, mask_tokens, prepare
from training.domain_merge import DELTA_FILE, REPORT_FILE, merge_delta
from training.encoder import LoRALinear, build_model


def test_masking_predicts_only_real_tokens_about_fifteen_percent() -> None:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (64, 40))
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    attention = torch.ones_like(ids)
    attention[:, 30:] = 0  # padding
    masked, labels = mask_tokens(ids, attention, {101, 102, 0}, 103, 30522, generator)
    predicted = labels != -100
    assert not predicted[:, 0].any() and not predicted[:, 30:].any()
    assert 0.12 < predicted[:, 1:30].float().mean() < 0.18
    assert torch.equal(labels[predicted], ids[predicted])
    share_masked = (masked[predicted] == 103).float().mean()
    assert 0.7 < share_masked < 0.9  # 80 % [MASK], the rest random or unchanged
    assert torch.equal(masked[~predicted], ids[~predicted])


def test_merged_backbone_equals_the_adapted_model(tiny_backbone: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    masked_lm, trainable = prepare(build_model(tiny_backbone, 0, 2), DomainConfig(rank=4, alpha=8.0))
    assert isinstance(masked_lm, MaskedLM) and trainable
    for layer in masked_lm.layers:  # as if trained: B away from its zero start
        for module in layer.modules():
            if isinstance(module, LoRALinear):
                torch.nn.init.normal_(module.lora_b, std=0.05)
    delta = tmp_path / "delta"
    delta.mkdir()
    save_file(delta_state(masked_lm), str(delta / DELTA_FILE))
    base_sha = file_sha256(tiny_backbone / "model.safetensors")
    (delta / REPORT_FILE).write_text(json.dumps({"base": {"weights_sha256": base_sha},
                                                  "delta_sha256": file_sha256(delta / DELTA_FILE)}))
    identity = merge_delta(tiny_backbone, base_sha, delta, tmp_path / "merged")
    assert merge_delta(tiny_backbone, base_sha, delta, tmp_path / "merged") == identity  # reused, same identity
    merged = build_model(tmp_path / "merged", 0, 2)
    for adapted, plain in zip(masked_lm.layers, merged.head.layers, strict=True):
        assert isinstance(adapted.query, LoRALinear)
        assert torch.allclose(adapted.query.merged_weight(), plain.query.weight, atol=1e-6)
        assert torch.allclose(adapted.out.merged_weight(), plain.out.weight, atol=1e-6)
    with pytest.raises(ValueError, match="base weights"):
        merge_delta(tiny_backbone, "0" * 64, delta, tmp_path / "other")
