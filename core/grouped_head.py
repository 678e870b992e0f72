"""The batched head graph at run time: one session run scores the rows of every item in a micro-batch.

Each item's per-item tensors (LoRA A/B of every adapted linear + classifier) are read once from its
.onnx_adapter file into numpy and stacked, with every other live item's, into resident arrays (slots); a run
tells each row its slot. Stacking per run cost 100 us per row on one core (bench/host_path.py, 30 items, 256
rows per batch): the host time that kept a GPU waiting. Classifiers of different score ranges are
zero-padded to the widest; each item reads back only its own columns. ORT's LoRA-adapter mechanism is not
used here: it binds one adapter per run (export/graphs.py GroupedHead says why one run per batch matters)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.onnx_runtime import FloatArray, IntArray, head_outputs, load_session, output_names

FIXED_INPUTS = ("hidden_states", "attention_mask", "row_slot")
# Past this many live members a run stacks only its own (the resident copy would double the heads' memory
# at a scale where a batch holds a small share of the items anyway).
MAX_RESIDENT = 256


def read_adapter_tensors(path: Path) -> dict[str, FloatArray]:
    """The tensors of an .onnx_adapter file, by name (ORT's own reader of the format). Copied: the arrays
    ORT hands out are views into the reader's buffer, freed with it."""
    adapter = ort.AdapterFormat.read_adapter(str(path))
    return {name: np.array(value.numpy(), dtype=np.float32, copy=True)
            for name, value in adapter.get_parameters().items()}


class GroupedHeads:
    """The backbone's batched head session; `logits` runs any mix of items' rows at once."""

    def __init__(self, path: Path, threads: int, device: str = "cpu", bind_on: str | None = None) -> None:
        self.session = load_session(path, threads, arena=False, device=device)
        self.names = [item.name for item in self.session.get_inputs() if item.name not in FIXED_INPUTS]
        # IO binding (core/trunk_states.py): the resident stack is also kept there, copied once per rebuild
        # instead of with every run.
        self.bind_on = bind_on
        self._lock = threading.Lock()
        # member -> its slot in `_stacked`; weak: a member the head cache dropped leaves at the next rebuild.
        self._slot_of: weakref.WeakKeyDictionary[GroupedMember, int] = weakref.WeakKeyDictionary()
        self._stacked: dict[str, np.ndarray] = {}
        self._bound: dict[str, ort.OrtValue] = {}  # `_stacked` on `bind_on`

    def logits(self, hidden: FloatArray, mask: IntArray, row_slot: IntArray,
               slots: Sequence[GroupedMember]) -> FloatArray:
        """(rows, widest score range) logits; row i used slots[row_slot[i]]'s tensors. Columns past an item's
        own score range are padding: callers keep the first `labels` of each row."""
        return self.run(hidden, mask, row_slot, slots, pooled=False)[0]

    def run(self, hidden: FloatArray | ort.OrtValue, mask: IntArray, row_slot: IntArray,
            slots: Sequence[GroupedMember], pooled: bool) -> tuple[FloatArray, FloatArray | None]:
        """logits as above, and each row's pooled features where asked for (and the graph has them). `hidden`
        as an OrtValue: the trunk's output left on the device (core/trunk_states.py), run with IO binding."""
        resident = self._resident(slots)
        bound: dict[str, ort.OrtValue] = {}
        if resident is None:
            stacked, slot_map = self._stack(slots), np.arange(len(slots), dtype=np.int64)
        else:
            stacked, slot_map, bound = resident
        feeds: dict[str, np.ndarray] = {"attention_mask": mask,
                                        "row_slot": slot_map[np.asarray(row_slot, dtype=np.int64)], **stacked}
        if isinstance(hidden, ort.OrtValue) or bound:
            return self._run_bound(hidden, feeds, bound, pooled)
        return head_outputs(self.session, {"hidden_states": hidden, **feeds}, pooled)

    def _run_bound(self, hidden: FloatArray | ort.OrtValue, feeds: dict[str, np.ndarray],
                   bound: dict[str, ort.OrtValue], pooled: bool) -> tuple[FloatArray, FloatArray | None]:
        """IO binding: the resident stack from where it is kept; hidden states as given (the trunk's OrtValue,
        or host rows gathered for a round over some of the chunk)."""
        binding = self.session.io_binding()
        if isinstance(hidden, ort.OrtValue):
            binding.bind_ortvalue_input("hidden_states", hidden)
        else:
            binding.bind_cpu_input("hidden_states", hidden)
        for name, array in feeds.items():
            if name in bound:
                binding.bind_ortvalue_input(name, bound[name])
            else:
                binding.bind_cpu_input(name, array)
        for name in output_names(self.session, pooled):
            binding.bind_output(name, "cpu")  # read back once per run, to the host
        self.session.run_with_iobinding(binding)
        outputs = binding.copy_outputs_to_cpu()
        features = np.asarray(outputs[1], dtype=np.float32) if len(outputs) > 1 else None
        return np.asarray(outputs[0], dtype=np.float32), features

    def _resident(self, slots: Sequence[GroupedMember]
                  ) -> tuple[dict[str, np.ndarray], IntArray, dict[str, ort.OrtValue]] | None:
        """The resident stack (and its copy where runs are bound) and each call slot's place in it, rebuilt
        when a member is new to it."""
        with self._lock:
            if any(member not in self._slot_of for member in slots):
                live = list(dict.fromkeys([*self._slot_of.keys(), *slots]))
                if len(live) > MAX_RESIDENT:
                    return None
                self._stacked = self._stack(live)
                self._bound = ({name: ort.OrtValue.ortvalue_from_numpy(array, self.bind_on, 0)
                                for name, array in self._stacked.items()} if self.bind_on else {})
                self._slot_of = weakref.WeakKeyDictionary({member: slot for slot, member in enumerate(live)})
            slot_map = np.fromiter((self._slot_of[member] for member in slots), dtype=np.int64, count=len(slots))
            return self._stacked, slot_map, self._bound

    def _stack(self, members: Sequence[GroupedMember]) -> dict[str, np.ndarray]:
        widest = max(member.labels for member in members)
        return {name: _padded([member.tensors[name] for member in members], widest) if name.startswith("classifier.")
                else np.stack([member.tensors[name] for member in members]) for name in self.names}


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
