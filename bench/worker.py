"""One system, one N, one process: `python -m bench.worker PLAN.json OUT.json`.

The plan says which system, which items, how many samples; the worker measures in this order:
load -> RSS -> cold and warm switches -> single-answer latency -> throughput (single item, mixed) -> RSS.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.systems import Engine, FullModels, NaivePeft, System, timed
from bench.workload import Row, load_workload


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentiles(seconds: list[float]) -> dict[str, Any]:
    values = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean()), "n": len(seconds), "samples_ms": [round(float(v), 4) for v in values]}


def build(plan: dict[str, Any], capacity: int | None = None) -> System:
    specs: dict[str, dict[str, Any]] = plan["specs"]
    if plan["system"].startswith("engine"):
        return Engine(Path(plan["engine_dir"]), plan["threads"], plan.get("precision", "fp32"))
    if plan["system"] == "full":
        files = {item: Path(path) for item, path in plan["files"].items()}
        return FullModels(files, specs, Path(plan["tokenizer"]), plan["max_length"], plan["threads"],
                          capacity or plan["capacity"])
    files = {item: Path(path) for item, path in plan["files"].items()}
    return NaivePeft(Path(plan["backbone"]), files, specs, plan["split_layer"], plan["layers"], plan["threads"],
                     capacity or plan["capacity"])


def throughput(system: System, rows: list[Row], batch: int) -> dict[str, float]:
    system.score(rows[:batch])  # warm: first runs allocate
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        system.score(rows[start : start + batch])
    seconds = time.perf_counter() - started
    return {"answers": len(rows), "seconds": seconds, "answers_per_s": len(rows) / seconds}


def latency(system: System, rows: list[Row]) -> dict[str, float]:
    system.score(rows[:1])
    return percentiles([timed(system.score, [row]) for row in rows])


def measure(plan: dict[str, Any]) -> dict[str, Any]:
    workload = load_workload(plan["n"])
    items = workload.items
    result: dict[str, Any] = {"system": plan["system"], "n": plan["n"], "threads": plan["threads"]}
    result["rss_start_bytes"] = rss_bytes()
    started = time.perf_counter()
    system = build(plan)
    result["startup_s"] = time.perf_counter() - started
    result["rss_base_bytes"] = rss_bytes()
    started = time.perf_counter()
    system.load(items)
    result["load_items_s"] = time.perf_counter() - started
    result["rss_loaded_bytes"] = rss_bytes()
    resident = plan.get("capacity", len(items))
    result["resident_items"] = min(resident, len(items))

    rng = random.Random(7)
    sample = [rng.choice(items) for _ in range(plan["cold_samples"])]
    cold = []
    for item in sample:
        system.evict(item)
        cold.append(timed(system.ensure, item))
    result["switch_cold"] = percentiles(cold)
    cached = items[: result["resident_items"]]
    for item in cached:  # the cold samples may have evicted some under a capacity limit
        system.ensure(item)
    warm = [timed(system.switch, rng.choice(cached)) for _ in range(plan["warm_samples"])]
    result["switch_warm"] = percentiles(warm)

    result["latency_switching"] = latency(system, workload.switching(plan["latency_requests"], seed=11))
    batch = plan["batch"]
    single = throughput(system, workload.single_item(plan["throughput_answers"], seed=12), batch)
    mixed = throughput(system, workload.mixed(plan["throughput_answers"], seed=12), batch)
    result["throughput_single"] = single
    result["throughput_mixed"] = mixed
    result["rss_after_traffic_bytes"] = rss_bytes()
    # Real items only (the ten ASAP ones): the systems must agree on the scores a user would get.
    agreement_rows = workload.mixed(plan.get("agreement_answers", 0), seed=14, real_only=True)
    result["agreement_scores"] = {"rows": agreement_rows, "scores": system.score(agreement_rows)} \
        if agreement_rows else None

    budget = plan.get("budget_bytes")
    del system  # the budgeted run below must not share the process with these sessions
    if plan["system"] == "full" and budget:
        result["budgeted"] = budgeted_latency(plan, result, workload.switching(plan["latency_requests"], 11))
    return result


def budgeted_latency(plan: dict[str, Any], loaded: dict[str, Any], rows: list[Row]) -> dict[str, Any]:
    """The paper's scenario: full models get the engine's memory; those that do not fit load on demand."""
    per_model = (loaded["rss_loaded_bytes"] - loaded["rss_base_bytes"]) / max(loaded["resident_items"], 1)
    capacity = int((plan["budget_bytes"] - loaded["rss_base_bytes"]) // per_model)
    out: dict[str, Any] = {"budget_bytes": plan["budget_bytes"], "per_model_bytes": per_model,
                           "capacity": capacity}
    if capacity < 1:
        # Not even one full model fits: each request loads its model, scores, and lets it go.
        system: System = build(plan, capacity=1)
        samples = []
        for row in rows:
            system.evict(row[0])
            samples.append(timed(system.score, [row]))
        out["latency_switching"] = percentiles(samples)
        out["note"] = "no full model fits the engine's footprint: every request loads its model"
        return out
    system = build(plan, capacity=capacity)
    system.load(list(plan["files"])[:capacity])
    out["latency_switching"] = latency(system, rows)
    return out


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    result = measure(plan)
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
