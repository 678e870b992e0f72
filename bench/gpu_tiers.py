"""The GPU check's host-path and tier figures: for each cost tier (SCORER_TIER) the service's engine on the
device, ASAP answers of every item mixed in batches of 256 and of 32, stage by stage as bench/host_path.py times
them. Per tier and batch: answers/s, host µs per row (everything but ONNX Runtime's runs) and the device-busy
fraction (time inside the runs ÷ wall time: runs are synchronous, so it is the share the device and its copies
take; the rest is the host the device waits for), and answers/s through the service's micro-batcher, whose
finishing thread overlaps each batch's decoding with the next batch's model runs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from app.backend import AnswerRow, PreparedRow
from app.batcher import MicroBatcher
from app.onnx_backend import OnnxBackend
from app.schemas import BatchResponse
from app.scoring import row_result
from app.settings import Settings
from bench.gpu_engine import Device
from bench.host_path import measure
from core.manifest import TIERS
from training.asap import ASAP_ITEMS, load_asap_item

BATCHES = (256, 32)


def mixed_rows(count: int) -> list[AnswerRow]:
    """ASAP test answers of every item, interleaved (a class set across items)."""
    rows = [AnswerRow(item_id, text) for item_id in ASAP_ITEMS for text, _ in load_asap_item(item_id).test]
    rows.sort(key=lambda row: hash(row.text) % 997)
    return rows[:count]


def tier_figures(artifacts: Path, device: Device, threads: int, rows: list[AnswerRow]) -> dict[str, Any]:
    """Each tier as served (IO binding as `auto` sets it: on CUDA); on CUDA also the fast tier without IO
    binding ("fast_io_binding_off"), the measurement that decides whether binding stays on by default."""
    figures: dict[str, Any] = {}
    runs = [(tier, tier, "auto") for tier in TIERS]
    if device == "cuda":
        runs.append(("fast_io_binding_off", "fast", "off"))
    for name, tier, io_binding in runs:
        settings = Settings(artifacts=artifacts, device=device, threads=threads, tier=tier, io_binding=io_binding,
                            cache_bytes=1 << 40, max_batch_rows=max(BATCHES), duplicate_cache_entries=0)
        backend = OnnxBackend(settings)
        backend.warm_up()
        measure(backend, rows[: max(BATCHES)], max(BATCHES))  # every member loaded and checked once
        figures[name] = {}
        for batch in BATCHES:
            stages = measure(backend, rows, batch)
            wall = sum(stages.values())
            host = wall - stages["model"]
            figures[name][f"b{batch}"] = {"answers_per_s": round(len(rows) / wall, 1),
                                          "pipelined_answers_per_s": round(pipelined(backend, rows, batch), 1),
                                          "host_us_per_row": round(host / len(rows) * 1e6, 1),
                                          "device_busy_fraction": round(stages["model"] / wall, 3),
                                          "us_per_row": {k: round(v / len(rows) * 1e6, 1) for k, v in stages.items()}}
        del backend
    return figures


def pipelined(backend: OnnxBackend, rows: list[AnswerRow], batch: int) -> float:
    """Answers/s through the service's own stages at once: each class set of `batch` answers prepared on a
    worker thread (as a request is), scored through the micro-batcher (app/batcher.py: the inference thread's
    model runs beside the finishing thread's decoding) and answered as /batch's JSON, all sets in flight
    together. The stage figures beside it add the same stages up as if nothing overlapped."""

    async def run() -> float:
        batcher = MicroBatcher(backend, wait_ms=0, max_rows=batch, max_queue_rows=len(rows))
        batcher.start()

        async def class_set(answers: list[AnswerRow]) -> None:
            prepared = await asyncio.to_thread(backend.prepare, answers)
            outcomes = await batcher.submit([row for row in prepared if isinstance(row, PreparedRow)])
            BatchResponse.model_validate({"results": [row_result(index, outcome) for index, outcome
                                                      in enumerate(outcomes)]}).model_dump_json()

        try:
            began = time.perf_counter()
            await asyncio.gather(*(class_set(rows[start: start + batch]) for start in range(0, len(rows), batch)))
            return len(rows) / (time.perf_counter() - began)
        finally:
            await batcher.stop()

    return asyncio.run(run())


def loop_ratios(tiers: dict[str, Any] | None, loop: dict[str, Any] | None) -> dict[str, float] | None:
    """The fast tier's answers/s (single heads, what the loop computes too) over the plain PyTorch loop's,
    per batch size (goal on a GPU: >= 3)."""
    if not tiers or not loop or "fast" not in tiers:
        return None
    return {batch: round(tiers["fast"][batch]["answers_per_s"] / loop[batch]["answers_per_s"], 2)
            for batch in (f"b{size}" for size in BATCHES) if batch in loop}
