"""How honest and how costly `explain` is: every ASAP test answer through a real service's POST /batch, with and
without explain. `python -m bench.evidence --artifacts build/onnx` (the artifacts must hold evidence indexes).

Per item, on test answers (never in any index: the indexes hold training answers only): how often the score
most of the k neighbours got equals the served score and the human score, the QWK of the neighbours alone (their
majority score as a prediction), how often `neighbours_disagree` is raised and how accurate the served score is
on the answers it flags and on the rest. Cost: answers/s of the same requests with and without explain,
alternated, best of each (the duplicate cache is off, so both passes score every answer)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.server import Server
from training.asap import ASAP_ITEMS, load_asap_item
from training.metrics import quadratic_weighted_kappa


def _rows() -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    rows, truth = [], {}
    for item_id in ASAP_ITEMS:
        item = load_asap_item(item_id)
        truth[item_id] = [score for _, score in item.test]
        rows += [{"id": f"{item_id}:{n}", "item_id": item_id, "answer": text} for n, (text, _) in enumerate(item.test)]
    rows.sort(key=lambda row: hash(row["id"]) % 997)  # interleave items, as a class set would
    return rows, truth


def _pass(url: str, rows: list[dict[str, Any]], explain: bool, per_request: int) -> tuple[float, dict[str, Any]]:
    results: dict[str, Any] = {}
    started = time.perf_counter()
    with httpx.Client(timeout=600) as http:
        for start in range(0, len(rows), per_request):
            body = {"answers": rows[start : start + per_request], "explain": explain}
            for result in http.post(f"{url}/batch", json=body).json()["results"]:
                results[result["id"]] = result
    return len(rows) / (time.perf_counter() - started), results


def _item_figures(truth: list[int], results: list[dict[str, Any]], labels: list[int]) -> dict[str, Any]:
    served = np.array([r["score"] for r in results])
    human = np.array(truth)
    neighbour = np.array([r["evidence"]["neighbour_score"] for r in results])
    flagged = np.array(["neighbours_disagree" in r["review_reasons"] for r in results])
    return {
        "answers": len(truth),
        "neighbours_agree_with_served": round(float((neighbour == served).mean()), 4),
        "neighbours_agree_with_human": round(float((neighbour == human).mean()), 4),
        "served_agrees_with_human": round(float((served == human).mean()), 4),
        "qwk_served": round(quadratic_weighted_kappa(truth, served.tolist(), labels), 4),
        "qwk_neighbours": round(quadratic_weighted_kappa(truth, neighbour.tolist(), labels), 4),
        "flagged_share": round(float(flagged.mean()), 4),
        "accuracy_flagged": round(float((served == human)[flagged].mean()), 4) if flagged.any() else None,
        "accuracy_unflagged": round(float((served == human)[~flagged].mean()), 4) if (~flagged).any() else None,
    }


def means(items: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Unweighted means over the items (each item counts once, as the QWK means elsewhere)."""
    keys = ("neighbours_agree_with_served", "neighbours_agree_with_human", "served_agrees_with_human", "qwk_served",
            "qwk_neighbours", "flagged_share", "accuracy_flagged", "accuracy_unflagged")
    return {key: round(float(np.mean([figures[key] for figures in items.values() if figures[key] is not None])), 4)
            for key in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evidence", description=__doc__)
    parser.add_argument("--artifacts", default="build/onnx", type=Path)
    parser.add_argument("--rows-per-request", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="alternated passes with and without explain")
    parser.add_argument("--out", default="bench/results/evidence.json", type=Path)
    args = parser.parse_args(argv)
    rows, truth = _rows()
    manifest = json.loads((args.artifacts / "manifest.json").read_text())
    env = {"SCORER_ARTIFACTS": str(args.artifacts), "SCORER_DUPLICATE_CACHE_ENTRIES": "0"}
    server = Server(env, Path(tempfile.mkdtemp()) / "server.log")
    try:
        server.wait_ready(timeout=600)
        _pass(server.url, rows[:512], True, args.rows_per_request)  # warm-up: heads and indexes loaded
        speeds: dict[bool, list[float]] = {False: [], True: []}
        explained: dict[str, Any] = {}
        for _ in range(args.rounds):
            for explain in (False, True):
                speed, results = _pass(server.url, rows, explain, args.rows_per_request)
                speeds[explain].append(speed)
                explained = results if explain else explained
    finally:
        server.stop()
    items = {item_id: _item_figures(scores, [explained[f"{item_id}:{n}"] for n in range(len(scores))],
                                    manifest["items"][item_id]["labels"])
             for item_id, scores in truth.items()}
    plain, with_explain = max(speeds[False]), max(speeds[True])
    report = {"answers": len(rows), "answers_per_second": {"plain": round(plain, 1), "explain": round(with_explain, 1)},
              "explain_cost": round(1 - with_explain / plain, 4), "passes": speeds, "items": items,
              "mean": means(items)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({key: value for key, value in report.items() if key != "items"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
