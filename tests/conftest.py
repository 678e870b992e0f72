"""Shared fixtures: a tiny random BERT (seconds, not minutes) with the real MiniLM tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-64 random BERT saved as an HF folder (config, safetensors, tokenizer)."""
    import torch
    from transformers import BertConfig, BertModel

    from training.backbones import resolve_backbone

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    shutil.copy(resolve_backbone("minilm-en").path / "tokenizer.json", folder / "tokenizer.json")
    return folder


TINY_ITEM_ROWS = [
    ("acid rain reacts with limestone and marble", 2),
    ("the rain makes the statue dissolve because of acid", 2),
    ("vinegar changed the mass of the samples", 1),
    ("the mass went down", 1),
    ("i do not know", 0),
    ("idk", 0),
]


def tiny_item(item_id: str = "tiny-item", copies: int = 8) -> "object":
    from training.data import ItemData, ScoreRange

    rows = [(f"{text} {n}", score) for n in range(copies) for text, score in TINY_ITEM_ROWS]
    return ItemData(item_id, ScoreRange(0, 2), train=rows, validation=rows[:12], test=rows[12:24])
