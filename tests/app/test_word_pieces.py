"""The word cache gives exactly the ids and truncation MiniLM's tokenizer gives, on every ASAP answer and on
random ASCII made of the characters BERT's pipeline treats specially; whatever it does not mirror goes to the
tokenizer."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer

import core.word_pieces
from core.answer_tokens import id_bytes_of
from core.onnx_runtime import TextEncoder
from core.word_pieces import WordPieceCache
from training.asap import ASAP_ITEMS, load_asap_item
from training.backbones import resolve_backbone


def _tokenizer(max_length: int = 128) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(resolve_backbone("minilm-en").path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def _expected(tokenizer: Tokenizer, texts: list[str]) -> list[tuple[bytes, bool]]:
    return [(id_bytes_of(encoding.ids), bool(encoding.overflowing)) for encoding in tokenizer.encode_batch(texts)]


def _random_ascii(generator: random.Random) -> str:
    alphabet = "aAzZ09 \t\n\r\x0b\x0c\x00\x1f\x7f.,;:'\"!?-_()[]{}<>/\\|@#$%^&*+=~`"
    words = ["".join(generator.choices(alphabet, k=generator.randint(0, 12))) for _ in range(generator.randint(0, 60))]
    words += ["word", "Photosynthesis", "x" * generator.choice([99, 100, 101])]
    generator.shuffle(words)
    return " ".join(words)


def test_every_asap_answer_and_random_ascii_as_the_tokenizer_gives_them() -> None:
    tokenizer = _tokenizer()
    cache = WordPieceCache.for_tokenizer(tokenizer, 128)
    assert cache is not None
    texts = [text for item_id in ASAP_ITEMS for split in load_asap_item(item_id).splits().values()
             for text, _ in split]
    generator = random.Random(7)
    texts += [_random_ascii(generator) for _ in range(2000)]
    got = [result for start in range(0, len(texts), 256) for result in cache.encode_many(texts[start:start + 256])]
    expected = _expected(tokenizer, texts)
    mirrored = [(index, result) for index, result in enumerate(got) if result is not None]
    assert len(mirrored) > 0.95 * len(texts)  # nearly every answer takes the shortcut ...
    assert all(result == expected[index] for index, result in mirrored)  # ... and gets the tokenizer's ids
    assert any(truncated for _, (_, truncated) in mirrored)


def test_what_it_does_not_mirror_goes_to_the_tokenizer() -> None:
    cache = WordPieceCache.for_tokenizer(_tokenizer(), 128)
    assert cache is not None
    odd = ["café", "typed [CLS] here", "[MASK]", "naïve", "\u200b"]
    assert cache.encode_many(odd) == [None] * len(odd)
    encoder = TextEncoder(resolve_backbone("minilm-en").path / "tokenizer.json", 128, "")
    assert encoder.word_pieces is not None
    mixed = ["The cell [SEP] wall", "plain words", "Ünïcödé"]
    assert encoder.encode(mixed) == [(encoding.ids, bool(encoding.overflowing))
                                     for encoding in _tokenizer().encode_batch(mixed)]


def test_other_pipelines_keep_the_tokenizer() -> None:
    unigram = Tokenizer.from_file(str(resolve_backbone("e5-multilingual").path / "tokenizer.json"))
    unigram.enable_truncation(max_length=128)
    assert WordPieceCache.for_tokenizer(unigram, 128) is None
    cased = _tokenizer()
    cased.normalizer = __import__("tokenizers").normalizers.BertNormalizer(lowercase=False)
    assert WordPieceCache.for_tokenizer(cased, 128) is None
    assert WordPieceCache.for_tokenizer(_tokenizer(64), 128) is None  # truncation not the one mirrored


def test_a_full_cache_stops_learning_and_stays_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = _tokenizer(32)
    cache = WordPieceCache.for_tokenizer(tokenizer, 32)
    assert cache is not None
    monkeypatch.setattr(core.word_pieces, "CAPACITY", len(cache._pieces) + 5)
    texts = [" ".join(f"word{index}x{other}" for other in range(40)) for index in range(30)]
    assert cache.encode_many(texts) == _expected(tokenizer, texts)
    assert len(cache._pieces) <= core.word_pieces.CAPACITY
