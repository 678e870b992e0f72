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

# BERT's pre-tokenizer isolates every ASCII punctuation or symbol character (`char::is_ascii_punctuation`).
_WORDS = re.compile(r"[a-z0-9]+|[" + re.escape(string.punctuation) + "]")
# BERT's clean_text: tab, newline and carriage return become spaces; other control characters go.
_CLEAN = {code: None for code in [*range(32), 127]} | {ord(char): " " for char in "\t\n\r"}
# The vocabulary of answers is Zipfian: the first words seen are the frequent ones, so a full cache stops
# learning rather than evicting (the words it lacks are tokenized per batch, never wrongly).
CAPACITY = 1 << 16
PROBES = ["The acid rain would dissolve the marble.", "mRNA's codon (AUG) -> tRNA; 3'UTR!", "\tTabs\r\nand\x0b\x7f",
          "x" * 101 + " long-word", "  ", "", "#1: $5+6=11 @home ~ok {a|b} [x] `q` ^_^", "word " * 200,
          "Hyphen-ated e.g. U.S.A. 1,000.5 50% ##sub"]


class WordPieceCache:
    def __init__(self, tokenizer: Tokenizer, max_length: int, special_contents: list[str]) -> None:
        self.tokenizer = tokenizer
        self.content_length = max_length - 2  # [CLS] answer [SEP]
        self.special_contents = special_contents
        self.cls = tokenizer.token_to_id("[CLS]")
        self.sep = tokenizer.token_to_id("[SEP]")
        self._pieces: dict[str, list[int]] = {}

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
        expected = [(encoding.ids, bool(encoding.overflowing)) for encoding in tokenizer.encode_batch_fast(PROBES)]
        return cache if cache.encode_many(PROBES) == expected else None

    def words(self, text: str) -> list[str] | None:
        """The pre-tokenized words of `text`, or None where only the tokenizer can say."""
        if not text.isascii() or any(content in text for content in self.special_contents):
            return None
        return _WORDS.findall(text.translate(_CLEAN).lower())

    def encode_many(self, texts: list[str]) -> list[tuple[list[int], bool] | None]:
        """(ids, truncated) per text as the tokenizer gives them, or None for a text it must tokenize itself."""
        split = [self.words(text) for text in texts]
        results: list[tuple[list[int], bool] | None] = [None] * len(texts)
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
            encodings = self.tokenizer.encode_batch_fast(new, add_special_tokens=False)
            learned = {word: encoding.ids for word, encoding in zip(new, encodings, strict=True)}
            lookup = pieces
            if len(pieces) + len(learned) <= CAPACITY:
                pieces.update(learned)  # single dict writes: safe beside other threads' reads under the GIL
            else:
                lookup = {**pieces, **learned}  # full: this call's words only, the cache stays as it is
            for index in waiting:
                results[index] = self._assemble(split[index] or [], lookup)
        return results

    def _assemble(self, words: list[str], pieces: dict[str, list[int]]) -> tuple[list[int], bool]:
        ids = [self.cls]
        for word in words:
            ids += pieces[word]
        truncated = len(ids) - 1 > self.content_length
        if truncated:
            del ids[self.content_length + 1:]
        ids.append(self.sep)
        return ids, truncated
