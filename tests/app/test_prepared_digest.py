"""The duplicate cache's key for ensemble items: equal only when every member would read the same input."""

from __future__ import annotations

from app.backend import PreparedRow
from core.answer_tokens import EncodedAnswer, token_digest


def tokens(ids: list[int]) -> EncodedAnswer:
    return EncodedAnswer.of_ids(ids, False, len(ids), 0)


def test_single_member_rows_key_on_their_tokens() -> None:
    assert PreparedRow("a", tokens([1, 2])).digest == tokens([1, 2]).digest


def test_a_text_reading_member_separates_answers_the_tokenizer_merges() -> None:
    # "Acid" and "acid" are one answer to an uncased tokenizer, but not to a member that reads the text.
    upper = PreparedRow("a", tokens([1, 2]), text="Acid rain")
    lower = PreparedRow("a", tokens([1, 2]), text="acid rain")
    assert upper.digest != lower.digest
    assert upper.digest == PreparedRow("a", tokens([1, 2]), text="Acid rain").digest


def test_every_trunks_tokens_are_part_of_the_key() -> None:
    first = PreparedRow("a", tokens([1, 2]), others={"e5": tokens([7, 8])})
    second = PreparedRow("a", tokens([1, 2]), others={"e5": tokens([7, 9])})
    assert first.digest != second.digest and first.digest != tokens([1, 2]).digest


def test_the_token_digest_keeps_its_byte_layout() -> None:
    # Redis keeps digests across deploys: each id as 4 little-endian unsigned bytes, then T/F for truncation.
    import hashlib

    ids = [101, 2023, 70_000, 250_001, 102]
    layout = b"".join(token.to_bytes(4, "little") for token in ids) + b"T"
    assert token_digest(ids, True) == hashlib.sha256(layout).hexdigest()
    assert token_digest([], False) == hashlib.sha256(b"F").hexdigest()
