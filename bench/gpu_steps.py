"""The steps of `python -m bench.gpu`: how much it measures (full or --smoke), and one precision's figures
on two engines (correctness on the exported items, performance on the bench's 27-item mix). A failing step
is recorded and the next one runs: a GPU session is rare, one bug must not cost the other figures."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench.gpu_engine import Device, Precision, make_engine
from bench.gpu_measure import Answers, Golden, golden_diffs, performance, qwk_by_item
from bench.workload import Workload

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    b256_batches: int
    b32_batches: int
    single_requests: int
    cold_samples: int
    qwk_splits: tuple[str, ...]
    check_items: int | None  # items whose golden answers and QWK are checked (None: all)
    qwk_answers: int | None  # per item and split; None: all
    memory_ns: tuple[int, ...]
    memory_batch: int  # the mixed batch each memory process scores after loading its items
    tier_rows: int  # ASAP test answers per tier and batch size (bench/gpu_tiers.py)


FULL = Sizes(60, 200, 1000, 200, ("validation", "test"), None, None, (27, 1000), 256, 4096)
SMOKE = Sizes(1, 2, 10, 5, ("validation",), 2, 32, (27,), 32, 64)


def attempt(errors: list[str], label: str, action: Callable[[], T]) -> T | None:
    try:
        return action()
    except Exception as exc:  # recorded, and the next step runs
        errors.append(f"{label}: {type(exc).__name__}: {exc}")
        print(f"bench.gpu: {errors[-1]}", file=sys.stderr)
        return None


def on_engine(label: str, folder: Path, device: Device, precision: Precision, threads: int, errors: list[str],
              steps: dict[str, Callable[[Any], Any]], grouped: str = "auto") -> dict[str, Any]:
    """One engine over `folder`, each step on it in turn; the engine is released before the next one."""
    made = attempt(errors, f"{label} engine on {folder}",
                   partial(make_engine, folder, device, precision, threads, grouped=grouped))
    if made is None:
        return {}
    backend, facts = made
    out: dict[str, Any] = {"engine": facts}
    for name, step in steps.items():
        out[name] = attempt(errors, f"{label} {name}", partial(step, backend))
    return out


def measure_precision(label: str, precision: Precision, device: Device, artifacts: Path, perf_folder: Path,
                      threads: int, sizes: Sizes, workload: Workload, reference: Golden | None,
                      answers: Answers | None, errors: list[str], grouped: str = "auto") -> dict[str, Any]:
    block: dict[str, Any] = {}
    correctness: dict[str, Callable[[Any], Any]] = {}
    if reference is not None:
        correctness["golden"] = partial(golden_diffs, reference=reference, items=sizes.check_items)
    if answers is not None:
        correctness["qwk"] = partial(qwk_by_item, answers=answers)
    block.update(on_engine(label, artifacts, device, precision, threads, errors, correctness, grouped))
    timing = partial(performance, workload=workload, b256_batches=sizes.b256_batches, b32_batches=sizes.b32_batches,
                     single_requests=sizes.single_requests, cold_samples=sizes.cold_samples)
    perf = on_engine(label, perf_folder, device, precision, threads, errors, {"performance": timing}, grouped)
    block["performance"], block["perf_engine"] = perf.get("performance"), perf.get("engine")
    return block
