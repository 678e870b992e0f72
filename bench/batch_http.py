"""`python -m bench.batch_http`: class sets through `POST /batch` against the engine alone, per configuration.

Dashboards send whole class sets: the same ASAP test answers (mixed items, interleaved) go in batches of
`--rows` through a real uvicorn server and, in this process, through the engine (`score_now`, the same
backend without HTTP, JSON, validation, the duplicate cache or the micro-batcher) — one after the other,
same threads, so the service's own overhead shows as a ratio. Run for the shipped ensembles and for the fast
single-head mode (`SCORER_ENSEMBLES=false`): the serving cost of each configuration.
Writes bench/results/batch_http.json."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.backend import AnswerRow, score_now
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from bench.server import REPO, Server
from training.asap import ASAP_ITEMS, load_asap_item


def class_sets(answers: int, rows: int) -> list[list[tuple[str, str]]]:
    pool = [(item_id, text) for item_id in ASAP_ITEMS for text, _ in load_asap_item(item_id).test]
    pool.sort(key=lambda row: hash(row[1]) % 997)  # interleave items, as a class set across items would
    chosen = pool[:answers]
    return [chosen[start : start + rows] for start in range(0, len(chosen), rows)]


def through_http(artifacts: Path, env: dict[str, str], sets: list[list[tuple[str, str]]]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        server = Server({"SCORER_ARTIFACTS": str(artifacts), **env}, Path(folder) / "server.log")
        try:
            server.wait_ready(timeout=300)
            with httpx.Client(timeout=600) as http:
                warm = [{"id": n, "item_id": item, "answer": text} for n, (item, text) in enumerate(sets[0][:32])]
                http.post(f"{server.url}/batch", json={"answers": warm})
                started = time.perf_counter()
                for number, rows in enumerate(sets):
                    # distinct ids per set; answers are fresh to the duplicate cache (each text is sent once)
                    body = {"answers": [{"id": f"{number}:{n}", "item_id": item, "answer": text}
                                        for n, (item, text) in enumerate(rows)]}
                    response = http.post(f"{server.url}/batch", json=body)
                    response.raise_for_status()
                return time.perf_counter() - started
        finally:
            server.stop()


def engine_alone(artifacts: Path, ensembles: bool, threads: int, sets: list[list[tuple[str, str]]]) -> float:
    backend = OnnxBackend(Settings(artifacts=artifacts, ensembles=ensembles, threads=threads))
    backend.warm_up()
    score_now(backend, [AnswerRow(item, text) for item, text in sets[0][:32]])
    started = time.perf_counter()
    for rows in sets:
        score_now(backend, [AnswerRow(item, text) for item, text in rows])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_http", description=__doc__)
    parser.add_argument("--artifacts", default=REPO / "build" / "onnx", type=Path)
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=500, help="answers per /batch request (a class set)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=REPO / "bench" / "results" / "batch_http.json", type=Path)
    args = parser.parse_args(argv)
    sets = class_sets(args.answers, args.rows)
    answers = sum(len(rows) for rows in sets)
    report: dict[str, Any] = {"answers": answers, "rows_per_request": args.rows, "threads": args.threads}
    for mode, ensembles in (("ensembles", True), ("single_heads", False)):
        env = {"SCORER_ENSEMBLES": str(ensembles).lower(), "SCORER_THREADS": str(args.threads)}
        http_s = through_http(args.artifacts, env, sets)
        engine_s = engine_alone(args.artifacts, ensembles, args.threads, sets)
        report[mode] = {"http_answers_per_s": round(answers / http_s, 1),
                        "engine_answers_per_s": round(answers / engine_s, 1),
                        "http_vs_engine": round(engine_s / http_s, 3)}
        print(mode, report[mode], flush=True)
    report["ensemble_cost_vs_single"] = round(report["single_heads"]["engine_answers_per_s"]
                                              / report["ensembles"]["engine_answers_per_s"], 2)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
