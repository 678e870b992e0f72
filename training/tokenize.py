"""The one tokenizer set-up shared by training, export and (through the exported file) serving."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer


def load_tokenizer(folder: Path, max_length: int) -> Tokenizer:
    """Truncate to max_length, never pad: batches are padded to their own longest row."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def encode_texts(tokenizer: Tokenizer, texts: list[str], prefix: str = "") -> list[list[int]]:
    return [encoding.ids for encoding in tokenizer.encode_batch([prefix + text for text in texts])]
