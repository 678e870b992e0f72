"""The training encoder on an MPNet checkpoint computes what transformers' own MPNetModel computes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from training.encoder import EncoderConfig, attention_bias, build_model, mean_pool
from training.encoder_layout import relative_position_bucket


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Path) -> Path:
    from transformers import MPNetConfig, MPNetModel

    folder = tmp_path_factory.mktemp("tiny-mpnet")
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=160, relative_attention_num_buckets=32)
    model = MPNetModel(config)
    with torch.no_grad():  # a visible relative bias: the default init is small enough to hide a bug
        model.encoder.relative_attention_bias.weight.normal_(std=1.0)
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(tiny_backbone / "tokenizer.json", folder / "tokenizer.json")
    return folder


def test_config_reads_the_mpnet_layout(tiny_mpnet: Path) -> None:
    config = EncoderConfig.from_hf(tiny_mpnet)
    assert (config.architecture, config.relative_buckets, config.type_vocab) == ("mpnet", 32, 0)


@pytest.mark.parametrize("split_layer", [0, 2])
def test_trunk_and_head_match_transformers_mpnet(tiny_mpnet: Path, split_layer: int) -> None:
    from transformers import MPNetModel

    reference = MPNetModel.from_pretrained(tiny_mpnet).eval()
    model = build_model(tiny_mpnet, split_layer, 3, dropout=0.0).eval()
    # 140 tokens: offsets beyond max_exact and beyond max_distance (128) reach the log-spaced buckets
    ids = torch.randint(5, 30000, (2, 140))
    mask = torch.ones_like(ids)
    mask[1, 90:] = 0  # a right-padded row
    ids[1, 90:] = 1  # MPNet's padding id
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = model.trunk(ids, mask)
        bias = attention_bias(mask, hidden.dtype, model.head.position_bias)
        for layer in model.head.layers:  # the head's own layers, without its pooling and classifier
            hidden = layer(hidden, bias)
    real = mask.bool()
    assert torch.allclose(hidden[real], expected[real], atol=1e-4)
    pooled = mean_pool(hidden, mask)
    assert torch.allclose(pooled, mean_pool(expected, mask), atol=1e-4)


def test_buckets_match_transformers() -> None:
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    positions = torch.arange(300)
    relative = positions[None, :] - positions[:, None]
    expected = MPNetEncoder.relative_position_bucket(relative, num_buckets=32)
    assert torch.equal(relative_position_bucket(relative, 32), expected)
