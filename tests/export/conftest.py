"""Fixtures shared by the exporter's tests."""

from __future__ import annotations

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
