"""The figures of `python -m bench.gpu` for one engine: throughput, single-answer latency, cold switches,
logits against a CPU session, QWK on the ASAP answers. Every call goes through the engine as served."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from app import metrics
from app.onnx_backend import OnnxBackend
from bench.gpu_engine import Row, asap_source, item_logits, max_abs, score_classes, served_probabilities
from bench.workload import Workload
from core.onnx_runtime import FloatArray
from training.asap import load_asap_item
from training.metrics import quadratic_weighted_kappa

Answers = dict[str, dict[str, tuple[list[str], list[int]]]]  # item -> split -> (texts, 0-based scores)
Golden = dict[str, dict[str, FloatArray]]  # item -> "logits" / "probabilities" on its golden answers


def stats(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean()), "max_ms": float(values.max()), "n": len(seconds)}


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _trunk_runs() -> float:
    """Trunk runs so far in this process (the engine observes each run's rows in scorer_batch_rows)."""
    for family in metrics.BATCH_ROWS.collect():
        for sample in family.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0


def throughput(backend: OnnxBackend, rows: list[Row], batch: int) -> dict[str, float]:
    batches = [rows[start : start + batch] for start in range(0, len(rows), batch)]
    if len(batches) > 1:  # warm: the first runs of a shape allocate (arena, cuBLAS workspaces); not in --smoke
        score_classes(backend, batches[0])
    runs = _trunk_runs()
    started = time.perf_counter()
    for chunk in batches:
        score_classes(backend, chunk)
    seconds = time.perf_counter() - started
    return {"answers": len(rows), "batch": batch, "seconds": seconds, "answers_per_s": len(rows) / seconds,
            "trunk_runs_per_batch": (_trunk_runs() - runs) / len(batches)}


def performance(backend: OnnxBackend, workload: Workload, b256_batches: int, b32_batches: int,
                single_requests: int, cold_samples: int) -> dict[str, Any]:
    """Mixed-item batches of 256 and 32, sequential single answers (the item changes every request, its head
    cached), and single answers to an item whose head was just evicted (cold: the head is loaded again;
    its golden answers were checked at its first load, as in a running service)."""
    out: dict[str, Any] = {
        "b256": throughput(backend, workload.mixed(256 * b256_batches, seed=12), 256),
        "b32": throughput(backend, workload.mixed(32 * b32_batches, seed=13), 32),
    }
    singles = workload.switching(single_requests + 1, seed=11)
    score_classes(backend, singles[:1])
    out["single"] = stats([timed(partial(score_classes, backend, [row])) for row in singles[1:]])
    cold, load = [], []
    for row in workload.switching(cold_samples, seed=15):
        backend.cache.drop(row[0])
        cold.append(timed(partial(score_classes, backend, [row])))
        backend.cache.drop(row[0])
        load.append(timed(partial(backend.cache.get, backend.artifacts.items[row[0]])))
    out["switch_cold"], out["switch_cold_load_only"] = stats(cold), stats(load)
    return out


def golden_outputs(backend: OnnxBackend, items: int | None = None) -> Golden:
    """Per item with golden answers (the first `items`, None: all): its first head's logits (where it runs on
    a trunk) and the probabilities the service answers (every member, combined)."""
    out: Golden = {}
    for item_id, spec in list(backend.artifacts.items.items())[:items]:
        if not spec.golden_texts:
            continue
        out[item_id] = {"probabilities": served_probabilities(backend, spec, spec.golden_texts)}
        logits = item_logits(backend, spec, spec.golden_texts)
        if logits is not None:
            out[item_id]["logits"] = logits
    return out


def golden_diffs(backend: OnnxBackend, reference: Golden, items: int | None = None) -> dict[str, Any]:
    """Max |difference| per item on its golden answers: logits and served probabilities against the CPU fp32
    session (`reference`), logits against those the export wrote (PyTorch-checked, on the CPU)."""
    per_item: dict[str, dict[str, float]] = {}
    for item, outputs in golden_outputs(backend, items).items():
        cpu = reference.get(item, {})
        entry = {f"{kind}_vs_cpu": max_abs(values, cpu[kind]) for kind, values in outputs.items()
                 if kind in cpu and cpu[kind].shape == values.shape}
        exported = np.asarray(backend.artifacts.items[item].golden_logits, dtype=np.float32)
        if "logits" in outputs and exported.shape == outputs["logits"].shape:
            entry["logits_vs_export"] = max_abs(outputs["logits"], exported)
        per_item[item] = entry

    def worst(key: str) -> float | None:
        values = [entry[key] for entry in per_item.values() if key in entry]
        return max(values) if values else None

    return {"max_abs_logit_diff_vs_cpu": worst("logits_vs_cpu"),
            "max_abs_probability_diff_vs_cpu": worst("probabilities_vs_cpu"),
            "max_abs_logit_diff_vs_export": worst("logits_vs_export"), "items": per_item}


def asap_answers(item_ids: list[str], splits: tuple[str, ...], limit: int | None) -> Answers:
    """Validation/test answers and 0-based human scores of the items trained on an ASAP set; with a `limit`,
    that many spread evenly over the split (the data files list answers by score)."""
    answers: Answers = {}
    for item_id in item_ids:
        source = asap_source(item_id)
        if source is None:
            continue
        data = load_asap_item(source)
        low = data.score_range.low
        answers[item_id] = {}
        for split in splits:
            rows = data.validation if split == "validation" else data.test
            rows = rows[:: max(1, len(rows) // limit)][:limit] if limit else rows
            answers[item_id][split] = ([text for text, _ in rows], [score - low for _, score in rows])
    return answers


def qwk_by_item(backend: OnnxBackend, answers: Answers, batch: int = 256) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for item_id, splits in answers.items():
        if item_id not in backend.artifacts.items:
            continue
        labels = list(range(len(backend.artifacts.items[item_id].labels)))
        out[item_id] = {}
        for split, (texts, truth) in splits.items():
            predicted: list[int] = []
            for start in range(0, len(texts), batch):
                predicted += score_classes(backend, [(item_id, text) for text in texts[start : start + batch]])
            out[item_id][split] = quadratic_weighted_kappa(truth, predicted, labels)
    return out


def qwk_change(qwk: dict[str, dict[str, float]], base: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per item and split, qwk - base; and the mean change per split over the items both have."""
    change = {item: {split: value - base[item][split] for split, value in splits.items() if split in base[item]}
              for item, splits in qwk.items() if item in base}
    splits = sorted({split for values in change.values() for split in values})
    mean = {split: float(np.mean([values[split] for values in change.values() if split in values]))
            for split in splits}
    return {"per_item": change, "mean": mean}
