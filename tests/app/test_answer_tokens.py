"""The answer summary's fast path (a readability table over the vocabulary, no offsets) gives exactly what the
per-token loop gives, on ordinary answers and on every kind of odd input the service guards against."""

from __future__ import annotations

from core.onnx_runtime import TextEncoder
from training.backbones import resolve_backbone

ODD = ["\u200b", "a\u0301", "\u0301\u0301", "Ελληνικά κείμενο", "العربية", "😀 emoji", "\x00\x01 ctrl", "word " * 300,
       "[UNK] [CLS] [SEP] [PAD] [MASK]", "ＡＢＣ", "混合 中文", "  ", "a\u200db", "ﬁ ligature", "\ue000 private",
       "The acid rain would dissolve the marble.", "mRNA leaves the nucleus", "Ünïcödé àccents naïve café"]


def test_fast_summary_equals_the_token_loop() -> None:
    encoder = TextEncoder(resolve_backbone("minilm-en").path / "tokenizer.json", 128, "")
    tokens = encoder.answer_tokens
    assert tokens.fast  # MiniLM: WordPiece, no prefix
    loop = [tokens.summarise(encoding) for encoding in encoder.tokenizer.encode_batch(ODD)]
    fast = encoder.encode_answers(ODD)
    assert fast == loop
    assert any(answer.unknown_tokens for answer in fast) and any(answer.truncated for answer in fast)
    assert any(answer.readable_tokens == 0 for answer in fast)


def test_a_prefixed_backbone_keeps_the_loop() -> None:
    encoder = TextEncoder(resolve_backbone("minilm-en").path / "tokenizer.json", 128, "query: ")
    assert not encoder.answer_tokens.fast  # the prefix is skipped by offsets
    assert [answer.readable_tokens for answer in encoder.encode_answers(["acid rain"])] == [2]
