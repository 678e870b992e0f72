"""The trunk's hidden states of one chunk, kept where its run left them.

On CUDA a plain `session.run` copies the trunk's output to the host and the batched head graph's run copies
it back (rows x tokens x hidden floats each way, per micro-batch). With IO binding the output stays on the
device as an OrtValue that the batched head graph takes as its input; a host copy is made only where some
run needs the rows on the host (per-item heads, or a round of the batched graph over some of the rows).
ORT's LoRA-adapter trap (run_with_iobinding ignores active adapters) does not apply: neither the trunk nor
the batched head graph uses adapters, the batched graph takes its LoRA tensors as inputs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from core.onnx_runtime import FloatArray, IntArray, run_trunk


class TrunkStates:
    def __init__(self, host: FloatArray | None = None, bound: ort.OrtValue | None = None) -> None:
        if host is None and bound is None:
            raise ValueError("trunk states need a host array or a bound value")
        self._host = host
        self.bound = bound  # on the device the trunk ran on, under IO binding

    @property
    def host(self) -> FloatArray:
        """The states as a host array (copied from the device once, the first time a run needs it)."""
        if self._host is None:
            assert self.bound is not None
            self._host = np.asarray(self.bound.numpy(), dtype=np.float32)
        return self._host

    @property
    def rows(self) -> int:
        return int(self.bound.shape()[0]) if self.bound is not None else int(self.host.shape[0])


def run_trunk_states(session: ort.InferenceSession, ids: IntArray, mask: IntArray, keep_on: str | None) -> TrunkStates:
    """The trunk's run; `keep_on` ("cuda", or "cpu" in tests): its output left there through IO binding."""
    if keep_on is None:
        return TrunkStates(host=run_trunk(session, ids, mask))
    binding = session.io_binding()
    binding.bind_cpu_input("input_ids", ids)
    binding.bind_cpu_input("attention_mask", mask)
    binding.bind_output("hidden_states", keep_on)
    session.run_with_iobinding(binding)
    return TrunkStates(bound=binding.get_outputs()[0])
