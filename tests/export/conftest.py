"""Fixtures shared by the exporter's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import tiny_item
from training.pipeline import train_adapter
from training.trainer import TrainConfig


@pytest.fixture(scope="module")
def tiny_adapters(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    for item_id, seed in (("item-a", 1), ("item-b", 2)):
        config = TrainConfig(split_layer=1, max_epochs=2, batch_size=8, seed=seed, learning_rate=5e-3)
        train_adapter(tiny_item(item_id), root, config, str(tiny_backbone))
    return root


@pytest.fixture(scope="session")
def two_backbones(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The session's tiny BERT and a second one with other random weights (and another name)."""
    import torch
    from transformers import BertConfig, BertModel

    other = tmp_path_factory.mktemp("tiny-bert-other")
    torch.manual_seed(1)
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128)
    BertModel(config).save_pretrained(other, safe_serialization=True)
    shutil.copy(tiny_backbone / "tokenizer.json", other / "tokenizer.json")
    return tiny_backbone, other
