"""A word cache in front of a BERT WordPiece tokenizer, for answers in plain ASCII.

Tokenizing is most of the host's work per answer: Hugging Face's Rust pipeline (normaliser, pre-tokenizer,
WordPiece) took 61 us per ASAP answer on one core (53 tokens), more than the whole host path's budget of 40.
Students' answers to one question reuse a small vocabulary, so the pieces of each word are worth keeping:
for ASCII text the BERT pipeline reduces to "drop control characters, lower-case, split on whitespace, isolate
every ASCII punctuation mark", which one regular expression does at C speed, and each word's pieces come from
a dict. The tokenizer stays the only source of pieces (a word the cache lacks is tokenized by it, a batch's
new words in one call); anything this shortcut does not mirror exactly (non-ASCII text, text containing a
special token such as "[CLS]", another pipeline) goes to the tokenizer whole. No library offers such a cache
(tokenizers has none; its `encode_batch_fast` is the path this replaces), hence our own. `for_tokenizer`
checks the pipeline's configuration and then the shortcut's output against the tokenizer on probe texts."""

from __future__ import annotations

import json
import re
import string
from typing import Any

from tokenizers import Tokenizer

from core.answer_tokens import ID_WIDTH, id_bytes_of

# BERT's pre-tokenizer isolates every ASCII punctuation or symbol character (`char::is_ascii_punctuation`).
# Over bytes: the ASCII text is encoded once, and cleaning + lower-casing is one bytes.translate (a str
# translate with a dict, then lower(), cost 1.3 us more per answer).
_WORDS = re.compile(rb"[a-z0-9]+|[" + re.escape(string.punctuation.encode()) + rb"]")
# BERT's clean_text: tab, newline and carriage return become spaces; other control characters go.
_DELETE = bytes(code for code in [*range(32), 127] if code not in b"\t\n\r")
_LOWER_SPACED = bytes(32 if code in b"\t\n\r" else code + 32 if 65 <= code <= 90 else code for code in range(256))
# The vocabulary of answers is Zipfian: the first words seen are the frequent ones, so a full cache stops
# learning rather than evicting (the words it lacks are tokenized per batch, never wrongly).
CAPACITY = 1 << 16
PROBES = ["The acid rain would dissolve the marble.", "mRNA's codon (AUG) -> tRNA; 3'UTR!", "\tTabs\r\nand\x0b\x7f",
          "x" * 101 + " long-word", "  ", "", "#1: $5+6=11 @home ~ok {a|b} [x] `q` ^_^", "word " * 200,
          "Hyphen-ated e.g. U.S.A. 1,000.5 50% ##sub"]


class WordPieceCache:
    def __init__(self, tokenizer: Tokenizer, max_length: int, special_contents: list[str]) -> None:
        self.tokenizer = tokenizer
        self.content_bytes = (max_length - 2) * ID_WIDTH  # [CLS] answer [SEP]
        # One search for every special token's text (a generator over them was 1 us per answer).
        self.special = re.compile("|".join(map(re.escape, special_contents))) if special_contents else None
        self.cls = id_bytes_of([tokenizer.token_to_id("[CLS]")])
        self.sep = id_bytes_of([tokenizer.token_to_id("[SEP]")])
        # Each word's pieces as id bytes (core.answer_tokens.ID_BYTES): an answer is one bytes join at C speed
        # (extending a list of ints word by word was 4-5 us per answer).
        self._pieces: dict[bytes, bytes] = {}  # ASCII word -> its pieces' id bytes

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer, max_length: int) -> WordPieceCache | None:
        """The cache where the tokenizer is the BERT pipeline it mirrors, else None (use the tokenizer)."""
        config: dict[str, Any] = json.loads(tokenizer.to_str())
        normalizer = config.get("normalizer") or {}
        post = config.get("post_processor") or {}
        truncation = tokenizer.truncation or {}
        mirrored = (normalizer.get("type") == "BertNormalizer" and normalizer.get("clean_text") is True
                    and normalizer.get("lowercase") is True
                    and (config.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
                    and config["model"].get("type") == "WordPiece" and post.get("type") == "TemplateProcessing"
                    and [next(iter(part)) for part in post.get("single", [])] == ["SpecialToken", "Sequence",
                                                                                 "SpecialToken"]
                    and truncation.get("max_length") == max_length and truncation.get("stride") == 0
                    and str(truncation.get("direction")).lower() == "right" and tokenizer.padding is None)
        if not mirrored or tokenizer.token_to_id("[CLS]") is None or tokenizer.token_to_id("[SEP]") is None:
            return None
        cache = cls(tokenizer, max_length, [added["content"] for added in config.get("added_tokens", [])])
        expected = [(id_bytes_of(encoding.ids), bool(encoding.overflowing))
                    for encoding in tokenizer.encode_batch_fast(PROBES)]
        return cache if cache.encode_many(PROBES) == expected else None

    def words(self, text: str) -> list[bytes] | None:
        """The pre-tokenized words of `text` (ASCII bytes), or None where only the tokenizer can say."""
        if not text.isascii() or (self.special is not None and self.special.search(text)):
            return None
        return _WORDS.findall(text.encode("ascii").translate(_LOWER_SPACED, _DELETE))

    def encode_many(self, texts: list[str]) -> list[tuple[bytes, bool] | None]:
        """(id bytes, truncated) per text as the tokenizer gives them, or None for a text it must tokenize
        itself."""
        split = [self.words(text) for text in texts]
        results: list[tuple[bytes, bool] | None] = [None] * len(texts)
        pieces = self._pieces
        waiting: list[int] = []  # texts with a word the cache lacks: done after one tokenizer call for all
        for index, words in enumerate(split):
            if words is not None:
                try:
                    results[index] = self._assemble(words, pieces)
                except KeyError:
                    waiting.append(index)
        if waiting:
            new = list({word for index in waiting for word in split[index] or () if word not in pieces})
            encodings = self.tokenizer.encode_batch_fast([word.decode("ascii") for word in new],
                                                         add_special_tokens=False)
            learned = {word: id_bytes_of(encoding.ids) for word, encoding in zip(new, encodings, strict=True)}
            lookup = pieces
            if len(pieces) + len(learned) <= CAPACITY:
                pieces.update(learned)  # single dict writes: safe beside other threads' reads under the GIL
            else:
                lookup = {**pieces, **learned}  # full: this call's words only, the cache stays as it is
            for index in waiting:
                results[index] = self._assemble(split[index] or [], lookup)
        return results

    def _assemble(self, words: list[bytes], pieces: dict[bytes, bytes]) -> tuple[bytes, bool]:
        body = b"".join(map(pieces.__getitem__, words))  # KeyError: a word the cache lacks
        truncated = len(body) > self.content_bytes
        return self.cls + (body[: self.content_bytes] if truncated else body) + self.sep, truncated
