"""Shared fixtures: a tiny random BERT (seconds, not minutes) with the real MiniLM tokenizer."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.server import REPO, Server, free_port

__all__ = ["REPO", "Server", "free_port"]  # the one server harness, shared with the bench


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


def tiny_item(item_id: str = "tiny-item", copies: int = 8) -> Any:
    from training.data import ItemData, ScoreRange

    rows = [(f"{text} {n}", score) for n in range(copies) for text, score in TINY_ITEM_ROWS]
    return ItemData(item_id, ScoreRange(0, 2), train=rows, validation=rows[:12], test=rows[12:24])


@pytest.fixture
def redis_url() -> object:
    """A real redis-server on a free loopback port, stopped after the test."""
    import subprocess
    import time

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server; .ci/run does it)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny trained items exported to ONNX (adapter format); item-a with its evidence index, item-b without."""
    from export.pipeline import ExportOptions, export_all
    from training.pipeline import train_adapter
    from training.trainer import TrainConfig

    adapters = tmp_path_factory.mktemp("tiny-adapters")
    for item_id, seed in (("item-a", 1), ("item-b", 2)):
        config = TrainConfig(split_layer=1, max_epochs=2, batch_size=8, seed=seed, learning_rate=5e-3)
        train_adapter(tiny_item(item_id), adapters, config, str(tiny_backbone))  # type: ignore[arg-type]
    out = tmp_path_factory.mktemp("tiny-onnx")
    export_all(ExportOptions(adapters, out, backbone=str(tiny_backbone), log=lambda _: None,
                             evidence_rows={"item-a": tiny_evidence_rows("item-a")}))  # item-b: none
    return out


def tiny_evidence_rows(item_id: str) -> list[tuple[str, str, int]]:
    """A tiny item's training answers with ids (`t<n>`), as the exporter's evidence index takes them."""
    return [(f"t{n}", text, score) for n, (text, score) in enumerate(tiny_item(item_id).train)]


@pytest.fixture(scope="session")
def committed_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every committed adapter (both backbones) exported with the full check `make export` runs: each head
    against PyTorch on every validation and test answer of its item (about 8 minutes on 2 cores). Without
    the fused trunk: its full check (every test answer once more) would add two minutes, and the tiny
    items' tests (tests/app/test_fused_trunk.py) cover it; the plain trunk is what these tests compare."""
    from export.pipeline import ExportOptions, export_all

    out = tmp_path_factory.mktemp("committed-onnx")
    export_all(ExportOptions(REPO / "adapters", out, log=lambda _: None, fused=False))
    return out


def _serve(artifacts: Path, env: dict[str, str], log: Path) -> Iterator[Server]:
    server = Server({"SCORER_ARTIFACTS": str(artifacts), **env}, log)
    server.wait_ready(timeout=300)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def committed_server(committed_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The committed items served as shipped (ensembles), through uvicorn, shared by the end-to-end modules."""
    yield from _serve(committed_artifacts, {}, tmp_path_factory.mktemp("log") / "server.log")


@pytest.fixture(scope="session")
def committed_fast_server(committed_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same with SCORER_ENSEMBLES=false: every item by its own MiniLM adapter alone."""
    yield from _serve(committed_artifacts, {"SCORER_ENSEMBLES": "false"}, tmp_path_factory.mktemp("log") / "fast.log")
