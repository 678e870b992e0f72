"""The host path per row, isolated: everything the service does for an answer on the CPU besides the model runs.

`python -m bench.host_path --artifacts build/onnx` scores mixed batches of ASAP test answers (every item, single
heads through the batched head graph: the GPU goal's configuration; the CPU's per-item head runs beside it)
in process, stage by stage as the service does: tokenization with the
answer summary (`prepare`), duplicate-cache keys, the scorer (`score_prepared`: grouping, padding, head
dispatch in the inference thread's part, `run_models`; combining, decoding and result objects in the finishing
thread's, `finish`) and the response (result rows, validation by the response model, JSON).
Every ONNX Runtime `run` is timed and taken out: what is left is host time, the ceiling a GPU cannot lift
(at 40 us per row one core feeds 25,000 answers/s). One core: ORT and the tokenizer's Rayon pool are held
to one thread (a GPU host has cores to spare, but the goal is per core)."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort

from app.backend import AnswerRow, PreparedRow
from app.duplicate_cache import cache_key
from app.onnx_backend import OnnxBackend
from app.schemas import BatchResponse
from app.scoring import row_result
from app.settings import Settings
from training.asap import ASAP_ITEMS, load_asap_item

GOAL_US = 40.0


class OrtClock:
    """The wall time during which some InferenceSession.run is under way (the model's time, not the host's).

    Runs may overlap (lexical members run on their own thread beside the trunk, app/member_runs.py), so the
    clock counts the union of the run intervals, never more than the wall time itself."""

    METHODS = ("run", "run_with_iobinding")  # plain runs, and IO-bound ones (core/trunk_states.py)

    def __init__(self) -> None:
        self.seconds = 0.0
        self._originals: dict[str, Callable[..., Any]] = {name: getattr(ort.InferenceSession, name)
                                                          for name in self.METHODS}
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0

    def __enter__(self) -> OrtClock:
        for name, original in self._originals.items():
            setattr(ort.InferenceSession, name, self._timed(original))
        return self

    def _timed(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(session: Any, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self._active == 0:
                    self._since = time.perf_counter()
                self._active += 1
            try:
                return original(session, *args, **kwargs)
            finally:
                with self._lock:
                    self._active -= 1
                    if self._active == 0:
                        self.seconds += time.perf_counter() - self._since

        return timed

    def __exit__(self, *_: object) -> None:
        for name, original in self._originals.items():
            setattr(ort.InferenceSession, name, original)


def _rows(count: int) -> list[AnswerRow]:
    rows: list[AnswerRow] = []
    for item_id in ASAP_ITEMS:
        rows += [AnswerRow(item_id, text) for text, _ in load_asap_item(item_id).test]
    rows.sort(key=lambda row: hash(row.text) % 997)
    return rows[:count]


def measure(backend: OnnxBackend, rows: list[AnswerRow], batch: int) -> dict[str, float]:
    """Seconds per stage over all rows, in batches of `batch`; each stage over every batch before the next
    stage, so that the model's runs (on the CPU here, on the device where it matters) do not leave the next
    batch's host work to start from caches the model emptied."""
    stages = dict.fromkeys(("prepare", "keys", "models_host", "finish", "model", "response"), 0.0)
    items = backend.items()
    pieces = [rows[start: start + batch] for start in range(0, len(rows), batch)]
    began = time.perf_counter()
    prepared = [[row for row in backend.prepare(piece) if isinstance(row, PreparedRow)] for piece in pieces]
    stages["prepare"] += time.perf_counter() - began
    began = time.perf_counter()
    keys = [[cache_key(row.item_id, items[row.item_id].version, row.digest) for row in batch_rows]
            for batch_rows in prepared]
    stages["keys"] += time.perf_counter() - began
    runs = []
    for batch_rows in prepared:  # the inference thread's part: grouping, padding, the model runs
        with OrtClock() as clock:
            began = time.perf_counter()
            runs.append(backend.run_models(batch_rows))
            elapsed = time.perf_counter() - began
        stages["model"] += clock.seconds
        stages["models_host"] += elapsed - clock.seconds
    began = time.perf_counter()
    outcomes = [backend.finish(run) for run in runs]  # the finishing thread's: combining, decoding, results
    stages["finish"] += time.perf_counter() - began
    began = time.perf_counter()
    for batch_keys, batch_outcomes in zip(keys, outcomes, strict=True):
        body = BatchResponse.model_validate({"results": [row_result(key, outcome) for key, outcome
                                                         in zip(batch_keys, batch_outcomes, strict=True)]})
        body.model_dump_json()
    stages["response"] += time.perf_counter() - began
    return stages


def _per_row(artifacts: Path, grouped_heads: Literal["on", "off"], rows: list[AnswerRow],
             batch: int) -> dict[str, float]:
    """Microseconds per row by stage, the best of five passes each (the host's share is small and noisy)."""
    settings = Settings(artifacts=artifacts, ensembles=False, threads=1, duplicate_cache_entries=0,
                        grouped_heads=grouped_heads)
    backend = OnnxBackend(settings)
    backend.warm_up()
    measure(backend, rows[: batch * 2], batch)  # every head loaded and checked once
    gc.freeze()  # as the service does after warm-up (app/lifespan.py): what is loaded is not walked again
    best: dict[str, float] | None = None
    for _ in range(5):
        stages = measure(backend, rows, batch)
        best = stages if best is None else {name: min(best[name], stages[name]) for name in stages}
    gc.unfreeze()
    assert best is not None
    return {name: round(seconds / len(rows) * 1e6, 2) for name, seconds in best.items()}


def _host(per_row: dict[str, float]) -> float:
    return round(sum(value for name, value in per_row.items() if name != "model"), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.host_path", description=__doc__)
    parser.add_argument("--artifacts", default="build/onnx", type=Path)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--out", default="bench/results/host_path.json", type=Path)
    args = parser.parse_args(argv)
    # One core: the tokenizer's Rayon pool starts at its first batch, so this holds it to one thread; ORT's
    # threads are the settings' (a test importing this module keeps its own pools).
    for name in ("RAYON_NUM_THREADS", "RAYON_RS_NUM_CPUS"):
        os.environ.setdefault(name, "1")
    rows = _rows(args.rows)
    per_row = {"on": _per_row(args.artifacts, "on", rows, args.batch),
               "off": _per_row(args.artifacts, "off", rows, args.batch)}
    host = _host(per_row["on"])
    # The stages run on different threads in the service (prepare: the request's worker; models: the inference
    # thread; finish: the finishing thread, app/batcher.py): the one beside the device is the models' host part.
    beside_device = per_row["on"]["models_host"]
    report = {"rows": len(rows), "batch": args.batch, "items": len({row.item_id for row in rows}),
              "heads": "batched head graph",
              "us_per_row": per_row["on"], "host_us_per_row": host, "goal_us_per_row": GOAL_US,
              "host_rows_per_s_one_core": round(1e6 / host),
              "inference_thread_host_us_per_row": beside_device,
              "inference_thread_rows_per_s": round(1e6 / beside_device),
              "model_share_of_wall": round(per_row["on"]["model"] / (host + per_row["on"]["model"]), 3),
              "per_item_heads": {"us_per_row": per_row["off"], "host_us_per_row": _host(per_row["off"])}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
