"""The batched head graph at run time: one session run scores the rows of every item in a micro-batch.

Each item's per-item tensors (LoRA A/B of every adapted linear + classifier) are read once from its
.onnx_adapter file into numpy; a run stacks the tensors of the items present (slots) and tells each row its
slot. Classifiers of different score ranges are zero-padded to the widest; each item reads back only its own
columns. ORT's LoRA-adapter mechanism is not used here: it binds one adapter per run (export/graphs.py
GroupedHead says why one run per batch matters)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.onnx_runtime import FloatArray, IntArray, head_outputs, load_session

FIXED_INPUTS = ("hidden_states", "attention_mask", "row_slot")


def read_adapter_tensors(path: Path) -> dict[str, FloatArray]:
    """The tensors of an .onnx_adapter file, by name (ORT's own reader of the format). Copied: the arrays
    ORT hands out are views into the reader's buffer, freed with it."""
    adapter = ort.AdapterFormat.read_adapter(str(path))
    return {name: np.array(value.numpy(), dtype=np.float32, copy=True)
            for name, value in adapter.get_parameters().items()}


class GroupedHeads:
    """The backbone's batched head session; `logits` runs any mix of items' rows at once."""

    def __init__(self, path: Path, threads: int, device: str = "cpu") -> None:
        self.session = load_session(path, threads, arena=False, device=device)
        self.names = [item.name for item in self.session.get_inputs() if item.name not in FIXED_INPUTS]

    def logits(self, hidden: FloatArray, mask: IntArray, row_slot: IntArray,
               slots: Sequence[GroupedMember]) -> FloatArray:
        """(rows, widest score range) logits; row i used slots[row_slot[i]]'s tensors. Columns past an item's
        own score range are padding: callers keep the first `labels` of each row."""
        return self.run(hidden, mask, row_slot, slots, pooled=False)[0]

    def run(self, hidden: FloatArray, mask: IntArray, row_slot: IntArray, slots: Sequence[GroupedMember],
            pooled: bool) -> tuple[FloatArray, FloatArray | None]:
        """logits as above, and each row's pooled features where asked for (and the graph has them)."""
        widest = max(member.labels for member in slots)
        feeds: dict[str, np.ndarray] = {"hidden_states": hidden, "attention_mask": mask,
                                        "row_slot": row_slot.astype(np.int64, copy=False)}
        for name in self.names:
            if name.startswith("classifier."):
                feeds[name] = _padded([member.tensors[name] for member in slots], widest)
            else:
                feeds[name] = np.stack([member.tensors[name] for member in slots])
        return head_outputs(self.session, feeds, pooled)


def _padded(arrays: list[FloatArray], widest: int) -> FloatArray:
    """Stack classifier weights (labels, hidden) or biases (labels,) padded with zeros to `widest` labels."""
    stacked = np.zeros((len(arrays), widest, *arrays[0].shape[1:]), dtype=np.float32)
    for slot, array in enumerate(arrays):
        stacked[slot, : array.shape[0]] = array
    return stacked


class GroupedMember:
    """One item's head for the batched graph (a HeadRunner: alone, it is a batch of one item)."""

    def __init__(self, heads: GroupedHeads, path: Path) -> None:
        self.heads = heads
        self.tensors = read_adapter_tensors(path)
        missing = set(heads.names) - set(self.tensors)
        if missing:
            raise ValueError(f"{path.name} lacks {len(missing)} tensors of the head graph, e.g. {sorted(missing)[0]}")
        self.labels = int(self.tensors["classifier.bias"].shape[0])
        self.nbytes = path.stat().st_size

    def logits(self, hidden: FloatArray, mask: IntArray) -> FloatArray:
        return self.run(hidden, mask, pooled=False)[0]

    def run(self, hidden: FloatArray, mask: IntArray, pooled: bool) -> tuple[FloatArray, FloatArray | None]:
        slots = np.zeros(hidden.shape[0], dtype=np.int64)
        logits, features = self.heads.run(hidden, mask, slots, [self], pooled)
        return logits[:, : self.labels], features
