"""`python -m bench [--quick]`: the engine, one full model per item and naive transformers+peft, side by
side on the same machine, answers and thread count; then HTTP load and the machine's matmul peak.

Every system runs in its own process, one at a time. Results: bench/results/{quick,full}.json, summary
markdown and plots (the quick run writes quick.json and quick_summary.md only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.fixtures import BenchArtifacts
from bench.workload import load_workload, source_item


@dataclass(frozen=True)
class Sizes:
    ns: tuple[int, ...]
    cold_samples: int
    warm_samples: int
    latency_requests: int
    throughput_answers: int
    http_seconds: float
    http_clients: int
    full_pool: int  # distinct full-model files; bigger N reuse them (each item still its own session)
    engine_int8: bool


QUICK = Sizes(ns=(27,), cold_samples=20, warm_samples=300, latency_requests=40, throughput_answers=128,
              http_seconds=4, http_clients=8, full_pool=27, engine_int8=True)
FULL = Sizes(ns=(10, 27, 100, 1000), cold_samples=60, warm_samples=2000, latency_requests=120,
             throughput_answers=512, http_seconds=20, http_clients=16, full_pool=27, engine_int8=True)
BATCH = 32
# peft adapters kept loaded by the naive system: loading 1,000 costs O(N^2) (each add walks all loaded ones:
# 18 s for 100, ~30 min extrapolated for 1,000), so a user would keep an LRU, as for the full models.
NAIVE_RESIDENT = 100


def run_worker(plan: dict[str, Any], runs: Path, resume: bool) -> dict[str, Any]:
    """One system at one N in a child process; its result is kept under `runs` with its plan's hash, and
    `--resume` reuses a kept result whose plan is unchanged (an interrupted full run picks up there)."""
    name = f"{plan['system']}-N{plan['n']}"
    plan_text = json.dumps(plan, sort_keys=True)
    plan_hash = hashlib.sha256(plan_text.encode()).hexdigest()
    plan_path, out_path = runs / f"{name}.plan.json", runs / f"{name}.json"
    if resume and out_path.is_file():
        kept: dict[str, Any] = json.loads(out_path.read_text())
        if kept.get("plan_sha256") == plan_hash:
            return kept
    plan_path.write_text(plan_text)
    env = {**os.environ, "OMP_NUM_THREADS": str(plan["threads"])}
    subprocess.run([sys.executable, "-m", "bench.worker", str(plan_path), str(out_path)], check=True, env=env)
    result: dict[str, Any] = json.loads(out_path.read_text())
    result["plan_sha256"] = plan_hash
    out_path.write_text(json.dumps(result))
    return result


def plans_for(n: int, sizes: Sizes, artifacts: BenchArtifacts, threads: int, backbone: Path) -> dict[str, Any]:
    workload = load_workload(n)
    items = workload.items
    specs = {item: artifacts.manifest["items"][source_item(item)] for item in items}
    specs = {item: {"labels": spec["labels"], "thresholds": spec["thresholds"]} for item, spec in specs.items()}
    common = {"n": n, "threads": threads, "specs": specs, "batch": BATCH, "cold_samples": sizes.cold_samples,
              "warm_samples": sizes.warm_samples, "latency_requests": sizes.latency_requests,
              "throughput_answers": sizes.throughput_answers, "agreement_answers": 100}
    pool = items[: sizes.full_pool]
    # Beyond the pool, an item reuses a pool file derived from its own real item (its thresholds fit).
    by_source: dict[str, list[str]] = {}
    for item in pool:
        by_source.setdefault(source_item(item), []).append(item)
    full_files = {item: str(artifacts.full_file(item if item in pool else by_source[source_item(item)][
        index % len(by_source[source_item(item)])])) for index, item in enumerate(items)}
    naive_files = {item: str(artifacts.naive_file(item)) for item in items}
    backbone_meta = artifacts.manifest["backbone"]
    return {
        "engine": {**common, "system": "engine", "engine_dir": str(artifacts.engine_dir(n))},
        "engine-int8": {**common, "system": "engine-int8", "precision": "int8",
                        "engine_dir": str(artifacts.engine_dir(n))},
        "full": {**common, "system": "full", "files": full_files, "capacity": min(n, sizes.full_pool),
                 "tokenizer": str(artifacts.source / artifacts.manifest["tokenizer"]["file"]),
                 "max_length": backbone_meta["max_length"]},
        "naive": {**common, "system": "naive", "files": naive_files, "backbone": str(backbone),
                  "split_layer": artifacts.split_layer, "layers": _layers(backbone),
                  "capacity": min(n, NAIVE_RESIDENT), **_naive_samples(n, sizes)},
    }


def _naive_samples(n: int, sizes: Sizes) -> dict[str, int]:
    """Beyond NAIVE_RESIDENT items nearly every naive switch deletes and adds a peft adapter (~0.3-1 s):
    fewer samples keep that run to minutes; the percentiles come from the same procedure."""
    if n <= NAIVE_RESIDENT:
        return {}
    return {"cold_samples": min(sizes.cold_samples, 20), "warm_samples": min(sizes.warm_samples, 200),
            "latency_requests": min(sizes.latency_requests, 40),
            "throughput_answers": min(sizes.throughput_answers, 128)}


def _layers(backbone: Path) -> int:
    return int(json.loads((backbone / "config.json").read_text())["num_hidden_layers"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="N=27 only, small samples (< 3 min)")
    parser.add_argument("--artifacts", type=Path, default=Path("build/onnx"))
    parser.add_argument("--work", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--systems", default="engine,engine-int8,full,naive")
    parser.add_argument("--ns", default=None, help="comma-separated N (default: by mode)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse kept per-run results (build/bench/runs/) whose plan is unchanged")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    ns = tuple(int(n) for n in args.ns.split(",")) if args.ns else sizes.ns
    order = ["engine", "engine-int8", "full", "naive"]  # the engine first: its memory is the full models' budget
    wanted = sorted((name for name in args.systems.split(",") if name != "engine-int8" or sizes.engine_int8),
                    key=order.index)
    if not (args.artifacts / "manifest.json").exists():
        raise SystemExit(f"no export under {args.artifacts}: run `make export` first")
    started = time.perf_counter()
    from training.backbones import resolve_backbone

    artifacts = BenchArtifacts(args.artifacts, args.work)
    backbone = resolve_backbone(artifacts.manifest["backbone"]["name"]).path
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"mode": "quick" if args.quick else "full", "threads": args.threads,
                               "batch": BATCH, "sizes": sizes.__dict__ | {"ns": list(ns)}, "runs": {}}
    runs = args.work / "runs" / results["mode"]
    runs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        peak_path = scratch / "peak.json"
        threads_env = {"OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads)}
        subprocess.run([sys.executable, "-m", "bench.peak", str(args.artifacts), str(args.threads),
                        str(peak_path), *(["--quick"] if args.quick else [])], check=True,
                       env={**os.environ, **threads_env})
        results["peak"] = json.loads(peak_path.read_text())
        steps = [(n, system) for n in ns for system in wanted]
        with tqdm(steps, desc="bench", unit="run") as progress:
            for n, system in progress:
                progress.set_postfix_str(f"{system} N={n}")
                plan = plans_for(n, sizes, artifacts, args.threads, backbone)[system]
                engine = results["runs"].get(f"engine-N{n}")
                if system == "full" and engine:
                    plan["budget_bytes"] = engine["rss_loaded_bytes"]
                results["runs"][f"{system}-N{n}"] = run_worker(plan, runs, args.resume)
        from bench.http_load import http_scenarios
        from bench.op_profile import profile
        from bench.server import Server

        # Where the engine's time goes, per operator (ORT's profiler; bench/op_profile.py reads ASAP items).
        if artifacts.manifest["backbone"]["name"] == "minilm-en":
            results["op_profile"] = profile(args.artifacts, args.threads, batches=4 if args.quick else 12)

        # The host path per row, ONNX Runtime's runs taken out (bench/host_path.py; one core, its own process).
        host_path = scratch / "host_path.json"
        subprocess.run([sys.executable, "-m", "bench.host_path", "--artifacts", str(args.artifacts),
                        "--rows", "1024" if args.quick else "4096", "--out", str(host_path)], check=True,
                       stdout=subprocess.DEVNULL)
        results["host_path"] = json.loads(host_path.read_text())

        # The duplicate-answer cache is off: every request pays for inference. Single heads, as every other
        # system here is compared (ensembles are costed by bench.batch_http and bench.qwk_over_http).
        service = Server({"SCORER_ARTIFACTS": str(args.artifacts), "SCORER_THREADS": str(args.threads),
                          "SCORER_DUPLICATE_CACHE_ENTRIES": "0", "SCORER_LOG_LEVEL": "warning",
                          "SCORER_ENSEMBLES": "false"},
                         scratch / "service.log")
        try:
            service.wait_ready()
            results["http"] = http_scenarios(service.url, load_workload(10), sizes.http_clients,
                                             sizes.http_seconds, BATCH, max_requests=20_000)
        finally:
            service.stop()
    results["seconds"] = time.perf_counter() - started
    from bench.summary import headline, write_summary

    results["headline"] = headline(results)
    name = "quick" if args.quick else "full"
    # Headline keys at the top (numbers), every measured figure under "detail".
    (args.out / f"{name}.json").write_text(json.dumps(results["headline"] | {"detail": results}, indent=1) + "\n")
    write_summary(results, args.out, name)
    print(json.dumps(results["headline"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
