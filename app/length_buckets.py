"""Split length-sorted rows into trunk runs that pad little.

One trunk run pads every row to its longest one. Real answers vary a lot in length (ASAP: half the tokens
of a random batch of 32 were padding), so a batch is cut where the padding would grow past `max_padding`,
but never into runs so small that the matrix multiplies lose their efficiency (`min_tokens`).
"""

from __future__ import annotations


def length_buckets(lengths: list[int], max_rows: int, min_tokens: int = 1024, max_padding: float = 0.2
                   ) -> list[slice]:
    """Slices of `lengths` (sorted ascending) to run one by one through the trunk."""
    buckets: list[slice] = []
    start, real = 0, 0
    for end, length in enumerate(lengths):
        rows = end - start
        if rows:
            padded = (rows + 1) * length  # this row is the longest so far: everyone pads to it
            too_padded = padded - (real + length) > max_padding * padded
            if rows >= max_rows or (too_padded and rows * lengths[end - 1] >= min_tokens):
                buckets.append(slice(start, end))
                start, real = end, 0
        real += length
    if start < len(lengths):
        buckets.append(slice(start, len(lengths)))
    return buckets
