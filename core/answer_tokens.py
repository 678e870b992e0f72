"""What the model will actually read of an answer: its token ids, a digest of them, and how much of it the
backbone's vocabulary knows.

The duplicate-answer cache keys on the digest of the ids the item's own tokenizer produces (after its
normaliser and truncation), never on a normalisation of our own: only answers the model cannot tell apart
may share a score. A cased tokenizer keeps "Acid" and "acid" apart; the BERT normaliser deletes control
characters that `str.split` would have treated as spaces. The same pass finds answers the model cannot read
at all (only control, zero-width or combining characters) and answers it mostly reads as `<unk>`."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from tokenizers import Encoding, Tokenizer

# Pieces carry these word-boundary markers (WordPiece continuation, SentencePiece space); what is left is text.
PIECE_MARKERS = ("##", "\u2581")
UNKNOWN_TOKENS = ("[UNK]", "<unk>")
# Unicode categories that carry nothing readable: controls, format (zero-width), unassigned, private use,
# surrogates, combining marks, separators.
UNREADABLE_CATEGORIES = ("C", "M", "Z")

ID_BYTES = "<u4"  # each id as 4 little-endian unsigned bytes (numpy writes int.to_bytes' bytes, at C speed)
ID_WIDTH = np.dtype(ID_BYTES).itemsize


@dataclass(frozen=True)
class EncodedAnswer:
    # The ids as ID_BYTES each: the digest hashes these bytes and `pad_answers` joins a chunk's rows at C speed
    # (a list of Python ints went through the interpreter token by token: 3-8 us per row of padding).
    id_bytes: bytes
    truncated: bool
    digest: str  # SHA-256 over the ids and the truncation flag: the duplicate cache's key
    readable_tokens: int  # tokens of the answer (not the prefix, not special) with a readable character
    unknown_tokens: int  # of those, how many the vocabulary maps to its unknown token

    @classmethod
    def of_ids(cls, ids: list[int], truncated: bool, readable_tokens: int, unknown_tokens: int) -> EncodedAnswer:
        id_bytes = id_bytes_of(ids)
        return cls(id_bytes, truncated, digest_of(id_bytes, truncated), readable_tokens, unknown_tokens)

    @property
    def ids(self) -> list[int]:
        return np.frombuffer(self.id_bytes, dtype=ID_BYTES).tolist()  # type: ignore[no-any-return]

    @property
    def length(self) -> int:
        return len(self.id_bytes) // ID_WIDTH

    @property
    def unknown_share(self) -> float:
        return self.unknown_tokens / self.readable_tokens if self.readable_tokens else 0.0


@lru_cache(maxsize=1 << 16)  # a vocabulary's pieces repeat: per-character lookups were 40 % of preparing a row
def _readable(piece: str) -> bool:
    for marker in PIECE_MARKERS:
        piece = piece.replace(marker, "")
    return any(unicodedata.category(char)[0] not in UNREADABLE_CATEGORIES for char in piece)


def id_bytes_of(ids: list[int]) -> bytes:
    return np.asarray(ids, dtype=ID_BYTES).tobytes()


def token_digest(ids: list[int], truncated: bool) -> str:
    return digest_of(id_bytes_of(ids), truncated)


def digest_of(id_bytes: bytes, truncated: bool) -> str:
    """The digest's one layout: the ids' bytes (ID_BYTES each), then T or F for the truncation flag."""
    return hashlib.sha256(id_bytes + (b"T" if truncated else b"F")).hexdigest()


class AnswerTokens:
    """Summarises encodings of `prefix + answer`; `prefix_chars` marks where the answer starts.

    `fast` (a WordPiece vocabulary and no prefix, as MiniLM's): whether a token is readable depends on its id
    alone (WordPiece reports an unknown word as `[UNK]`, never as its text), so one table over the vocabulary
    answers it for a whole answer in numpy, and the tokenizer need not compute offsets (`encode_batch_fast`):
    `prepare` 97 -> 81 us per answer on one core (bench/host_path.py). Elsewhere (a prefix to skip by offsets,
    or a Unigram vocabulary that reports unknown text as itself) the per-token loop stays."""

    def __init__(self, tokenizer: Tokenizer, prefix_chars: int) -> None:
        self.prefix_chars = prefix_chars
        self.unknown_ids = {tokenizer.token_to_id(token) for token in UNKNOWN_TOKENS} - {None}
        self.fast = prefix_chars == 0 and type(tokenizer.model).__name__ == "WordPiece"
        self._readable_ids = _readable_table(tokenizer) if self.fast else np.zeros(0, dtype=bool)
        self._unknown_ids = np.fromiter(self.unknown_ids, dtype=np.int64)

    def summarise_fast(self, encoded: list[tuple[bytes, bool, list[int] | None]]) -> list[EncodedAnswer]:
        """As `summarise`, from the ids alone (only where `fast`), for a whole batch in numpy at once.

        Each row: its id bytes (ID_BYTES each), truncated, and its special-tokens mask (None: only the first
        and last token are special, as the template puts [CLS] and [SEP])."""
        if not encoded:
            return []
        lengths = np.fromiter((len(id_bytes) for id_bytes, _, _ in encoded), dtype=np.int64,
                              count=len(encoded)) // ID_WIDTH
        ends = np.cumsum(lengths)
        starts = ends - lengths
        flat = np.frombuffer(b"".join(id_bytes for id_bytes, _, _ in encoded), dtype=ID_BYTES)
        # The template's [CLS]/[SEP] are not the answer; the same tokens typed by a student are (as in summarise).
        special = np.zeros(len(flat), dtype=bool)
        special[starts] = True  # (a row is never empty: the template adds both)
        special[ends - 1] = True
        for start, (_, _, mask) in zip(starts.tolist(), encoded, strict=True):
            if mask is not None:
                special[start: start + len(mask)] = mask
        readable = self._readable_ids[flat] & ~special
        unknown = readable & np.isin(flat, self._unknown_ids)
        row_of = np.repeat(np.arange(len(encoded)), lengths)
        readable_counts = np.bincount(row_of, weights=readable, minlength=len(encoded)).astype(int).tolist()
        unknown_counts = np.bincount(row_of, weights=unknown, minlength=len(encoded)).astype(int).tolist()
        return [EncodedAnswer(id_bytes, truncated, digest_of(id_bytes, truncated), readable, unknown)
                for (id_bytes, truncated, _), readable, unknown in zip(encoded, readable_counts, unknown_counts,
                                                                       strict=True)]

    def summarise(self, encoding: Encoding) -> EncodedAnswer:
        readable = unknown = 0
        for token_id, token, special, (_, end) in zip(encoding.ids, encoding.tokens, encoding.special_tokens_mask,
                                                      encoding.offsets, strict=True):
            if special or end <= self.prefix_chars:
                continue  # [CLS]/[SEP] and the backbone's input prefix ("query: ") are not the answer
            if not _readable(token):  # a bare "▁", or a control character SentencePiece kept as <unk>
                continue
            readable += 1
            # An unknown piece is real text the vocabulary lacks (Unigram reports the text, WordPiece "[UNK]").
            unknown += token_id in self.unknown_ids
        return EncodedAnswer.of_ids(encoding.ids, bool(encoding.overflowing), readable, unknown)


def _readable_table(tokenizer: Tokenizer) -> NDArray[np.bool_]:
    """Vocabulary id -> its token has a readable character (as `_readable`, once per vocabulary entry)."""
    vocabulary = tokenizer.get_vocab(with_added_tokens=True)
    table = np.zeros(max(vocabulary.values()) + 1, dtype=bool)
    for token, token_id in vocabulary.items():
        table[token_id] = _readable(token)
    return table
