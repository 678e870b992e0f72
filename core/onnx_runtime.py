"""Torch-free ONNX Runtime building blocks shared by the service, the exporter's validation and the bench:
sessions, the tokenizer wrapper, the trunk run (written once, here) and the two kinds of head runner."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from tokenizers import Tokenizer

from core.answer_tokens import ID_BYTES, ID_WIDTH, AnswerTokens, EncodedAnswer, id_bytes_of
from core.word_pieces import WordPieceCache

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]


def session_options(threads: int, arena: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Many co-resident sessions: spinning pools fight each other for the cores (3-4x slower measured).
    # The trunk alone too: spinning its pool sped a lone trunk run up 15 %, but the heads that follow it
    # then share the cores with the spinning threads (engine throughput 77 -> 57 answers/s, bench/).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Arenas grow per session (~50 MB each after a batch-32 run); heads run without one.
    options.enable_cpu_mem_arena = arena
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def providers(device: str) -> list[str | tuple[str, dict[str, str]]]:
    if device == "cuda":
        # fp32 means fp32: TF32 (the CUDA provider's default on Ampere and later) keeps a 10-bit mantissa in
        # matmuls; on an H200 it moved logits 2.1e-3, past the 1e-3 golden-answer check (bench/results/gpu.json).
        # The fp16 trunk is the fast path on the GPU.
        return [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_session(path: Path, threads: int, arena: bool, device: str = "cpu") -> ort.InferenceSession:
    return ort.InferenceSession(str(path), session_options(threads, arena), providers=providers(device))


class TextEncoder:
    """The exported tokenizer.json already carries the training truncation and no padding."""

    def __init__(self, path: Path, max_length: int, prefix: str) -> None:
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        self.prefix = prefix
        self.answer_tokens = AnswerTokens(self.tokenizer, len(prefix))
        # Plain-ASCII answers skip the tokenizer's pipeline (core/word_pieces.py); others go through it.
        self.word_pieces = WordPieceCache.for_tokenizer(self.tokenizer, max_length) if not prefix else None

    def encode(self, texts: list[str]) -> list[tuple[list[int], bool]]:
        if self.word_pieces is not None:
            return [(np.frombuffer(id_bytes, dtype=ID_BYTES).tolist(), truncated)
                    for id_bytes, truncated, _ in self._encode_cached(texts)]
        encodings = self.tokenizer.encode_batch([self.prefix + text for text in texts])
        return [(encoding.ids, bool(encoding.overflowing)) for encoding in encodings]

    def encode_answers(self, texts: list[str]) -> list[EncodedAnswer]:
        """Ids plus what the service needs to know of them: digest, readable and unknown token counts."""
        if self.answer_tokens.fast:  # no offsets needed (core/answer_tokens.py)
            if self.word_pieces is not None:
                return self.answer_tokens.summarise_fast(self._encode_cached(texts))
            return self.answer_tokens.summarise_fast([
                (id_bytes_of(encoding.ids), bool(encoding.overflowing), encoding.special_tokens_mask)
                for encoding in self.tokenizer.encode_batch_fast([self.prefix + text for text in texts])])
        encodings = self.tokenizer.encode_batch([self.prefix + text for text in texts])
        return [self.answer_tokens.summarise(encoding) for encoding in encodings]

    def _encode_cached(self, texts: list[str]) -> list[tuple[bytes, bool, list[int] | None]]:
        """id bytes, truncated and special-tokens mask (None: [CLS] first and [SEP] last) per text: the word cache
        where it applies, the tokenizer for the rest in one batch."""
        assert self.word_pieces is not None
        cached = self.word_pieces.encode_many(texts)
        rest = [index for index, result in enumerate(cached) if result is None]
        encodings = iter(self.tokenizer.encode_batch_fast([texts[index] for index in rest]) if rest else [])
        rows: list[tuple[bytes, bool, list[int] | None]] = []
        for result in cached:
            if result is None:
                encoding = next(encodings)
                rows.append((id_bytes_of(encoding.ids), bool(encoding.overflowing), encoding.special_tokens_mask))
            else:
                rows.append((result[0], result[1], None))
        return rows


def pad(rows: list[list[int]]) -> tuple[IntArray, IntArray]:
    """Right-padded ids and their attention mask."""
    return pad_id_bytes([id_bytes_of(row) for row in rows])


def pad_answers(answers: list[EncodedAnswer]) -> tuple[IntArray, IntArray]:
    return pad_id_bytes([answer.id_bytes for answer in answers])


def pad_id_bytes(rows: list[bytes]) -> tuple[IntArray, IntArray]:
    """Rows of id bytes (ID_BYTES each) right-padded, with their attention mask: one join and one scatter for
    all rows (a row at a time was 3 us per row; Python ints token by token 3-8 us)."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)) // ID_WIDTH
    mask = (np.arange(int(lengths.max())) < lengths[:, None]).astype(np.int64)
    ids = np.zeros(mask.shape, dtype=np.int64)
    ids[mask.astype(bool)] = np.frombuffer(b"".join(rows), dtype=ID_BYTES)
    return ids, mask


def run_trunk(session: ort.InferenceSession, ids: IntArray, mask: IntArray) -> FloatArray:
    """The shared trunk: token ids -> hidden states below the split layer."""
    hidden: FloatArray = session.run(["hidden_states"], {"input_ids": ids, "attention_mask": mask})[0]
    return hidden


class HeadRunner(Protocol):
    """One item's head: trunk hidden states + mask -> logits over its score points; `run` also hands out the
    pooled features its classifier read (None where the graph predates that output)."""

    nbytes: int

    def logits(self, hidden: FloatArray, mask: IntArray) -> FloatArray: ...

    def run(self, hidden: FloatArray, mask: IntArray, pooled: bool) -> tuple[FloatArray, FloatArray | None]: ...


def has_pooled(session: ort.InferenceSession) -> bool:
    return any(output.name == "pooled" for output in session.get_outputs())


def output_names(session: ort.InferenceSession, pooled: bool) -> list[str]:
    """What a head run reads back: logits, and the pooled features where asked for and the graph has them."""
    return ["logits", "pooled"] if pooled and has_pooled(session) else ["logits"]


def head_outputs(session: ort.InferenceSession, feeds: dict[str, np.ndarray], pooled: bool,
                 options: ort.RunOptions | None = None) -> tuple[FloatArray, FloatArray | None]:
    """logits, and the pooled features where asked for and the graph has them."""
    outputs = session.run(output_names(session, pooled), feeds, options)
    features = np.asarray(outputs[1], dtype=np.float32) if len(outputs) > 1 else None
    return np.asarray(outputs[0], dtype=np.float32), features


class MergedHead:
    """A graph of its own with the item's LoRA merged into the weights."""

    def __init__(self, path: Path, threads: int, device: str = "cpu") -> None:
        self.session = load_session(path, threads, arena=False, device=device)
        self.nbytes = path.stat().st_size

    def logits(self, hidden: FloatArray, mask: IntArray) -> FloatArray:
        return self.run(hidden, mask, pooled=False)[0]

    def run(self, hidden: FloatArray, mask: IntArray, pooled: bool) -> tuple[FloatArray, FloatArray | None]:
        return head_outputs(self.session, {"hidden_states": hidden, "attention_mask": mask}, pooled)


class AdapterHead:
    """One shared head graph + this item's .onnx_adapter (LoRA A/B + classifier), ~0.1 ms to load.

    Never run it through run_with_iobinding: ORT silently ignores active adapters there."""

    def __init__(self, shared: ort.InferenceSession, path: Path) -> None:
        self.session = shared
        self.adapter = ort.LoraAdapter()
        self.adapter.Load(str(path))
        self.options = ort.RunOptions()
        self.options.add_active_adapter(self.adapter)
        self.nbytes = path.stat().st_size

    def logits(self, hidden: FloatArray, mask: IntArray) -> FloatArray:
        return self.run(hidden, mask, pooled=False)[0]

    def run(self, hidden: FloatArray, mask: IntArray, pooled: bool) -> tuple[FloatArray, FloatArray | None]:
        return head_outputs(self.session, {"hidden_states": hidden, "attention_mask": mask}, pooled, self.options)


def release_freed_memory() -> None:
    """Give memory that ORT and the tokenizer have freed back to the OS.

    glibc keeps freed heap pages for reuse: after loading 27 items (each first load runs its golden answers)
    it held ~120 MB that no one used (bench/). Called after rare, allocation-heavy steps only (warm-up, a
    head's first load): it walks the heap, a few ms. A no-op where glibc is absent."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def length_sorted_batches(lengths: list[int], size: int = 64) -> list[list[int]]:
    """Row indices in batches of similar length (little padding); offline use (export checks, golden runs)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start : start + size] for start in range(0, len(order), size)]


def trunk_head_logits(trunk: ort.InferenceSession, head: HeadRunner, rows: list[list[int]]) -> FloatArray:
    """Logits of token-id rows through trunk then head, as served; in input order."""
    return trunk_head_outputs(trunk, head, rows, pooled=False)[0]


def trunk_head_outputs(trunk: ort.InferenceSession, head: HeadRunner, rows: list[list[int]],
                       pooled: bool) -> tuple[FloatArray, FloatArray | None]:
    """Logits (and the head's pooled features, where asked for and present) of token-id rows, in input order."""
    logits_out: FloatArray | None = None
    pooled_out: FloatArray | None = None
    for batch in length_sorted_batches([len(row) for row in rows]):
        ids, mask = pad([rows[i] for i in batch])
        logits, features = head.run(run_trunk(trunk, ids, mask), mask, pooled)
        if logits_out is None:
            logits_out = np.zeros((len(rows), logits.shape[1]), dtype=np.float32)
        logits_out[batch] = logits
        if features is not None:
            if pooled_out is None:
                pooled_out = np.zeros((len(rows), features.shape[1]), dtype=np.float32)
            pooled_out[batch] = features
    assert logits_out is not None, "no rows"
    return logits_out, pooled_out
