"""Regenerate tests/golden/asap.json: real ASAP test answers with the PyTorch adapter's expected scores.

Run after retraining asap-01 or asap-02: `python tests/golden/make_golden.py`."""

from __future__ import annotations

import json
from pathlib import Path

from core.decoding import decode, softmax
from export.pipeline import _adapter_model
from export.validate import torch_logits
from training.artifacts import current_record
from training.asap import load_asap_item
from training.backbones import resolve_backbone
from training.encoder import load_backbone_weights
from training.tokenize import encode_texts, load_tokenizer

ITEMS = ("asap-01", "asap-02")
PER_ITEM = 6


def main() -> None:
    repo = Path(__file__).resolve().parents[2]
    backbone = resolve_backbone("minilm-en")
    weights = load_backbone_weights(backbone.path)
    tokenizer = load_tokenizer(backbone.path, backbone.spec.max_length)
    golden = {}
    for item_id in ITEMS:
        record = current_record(repo / "adapters", item_id)
        assert record is not None
        item = load_asap_item(item_id)
        texts = [text for text, _ in item.test[:PER_ITEM]]
        logits = torch_logits(_adapter_model(record, backbone, weights), encode_texts(tokenizer, texts))
        scores = decode(softmax(logits), record.config["decoding"]["thresholds"])
        golden[item_id] = {"adapter_version": record.version,
                           "answers": [{"text": t, "score": int(s), "logits": [round(float(v), 5) for v in row]}
                                       for t, s, row in zip(texts, scores, logits, strict=True)]}
    (repo / "tests" / "golden" / "asap.json").write_text(json.dumps(golden, indent=1) + "\n")


if __name__ == "__main__":
    main()
