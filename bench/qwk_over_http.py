"""Score every ASAP test answer through a running service's POST /batch (mixed items per request) and
compare each item's QWK with the exporter's figure. `python -m bench.qwk_over_http --url http://127.0.0.1:8000`

`--fast`: the service runs SCORER_ENSEMBLES=false, so each item is compared with its first member's figure.
The per-answer scores are kept in the output (the accuracy report's paired bootstrap reads them)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

from core.manifest import single_entry
from training.asap import ASAP_ITEMS, load_asap_item
from training.metrics import quadratic_weighted_kappa


def test_rows() -> tuple[list[dict[str, object]], dict[str, list[int]]]:
    """Every ASAP test answer as a /batch row (items interleaved, as a class set would be), and the truth."""
    rows: list[dict[str, object]] = []
    truth: dict[str, list[int]] = {}
    for item_id in ASAP_ITEMS:
        item = load_asap_item(item_id)
        truth[item_id] = [score for _, score in item.test]
        rows += [{"id": f"{item_id}:{n}", "item_id": item_id, "answer": text} for n, (text, _) in enumerate(item.test)]
    rows.sort(key=lambda row: hash(row["id"]) % 997)
    return rows, truth


def score_over_http(url: str, rows: list[dict[str, object]], per_request: int) -> tuple[dict[str, int], float]:
    """Row id -> served score, and the seconds the whole set took through POST /batch."""
    started = time.perf_counter()
    results: dict[str, int] = {}
    with httpx.Client(timeout=600) as http:
        for start in range(0, len(rows), per_request):
            body = {"answers": rows[start : start + per_request]}
            for result in http.post(f"{url}/batch", json=body).json()["results"]:
                results[result["id"]] = result["score"]
    return results, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--artifacts", default="build/onnx", type=Path)
    parser.add_argument("--rows-per-request", type=int, default=500)
    parser.add_argument("--out", default="bench/results/qwk_over_http.json", type=Path)
    parser.add_argument("--fast", action="store_true", help="the service serves every item by its first member")
    args = parser.parse_args(argv)
    manifest = json.loads((args.artifacts / "manifest.json").read_text())
    rows, truth = test_rows()
    results, seconds = score_over_http(args.url, rows, args.rows_per_request)
    per_item: dict[str, dict[str, object]] = {}
    report: dict[str, object] = {"answers": len(rows), "seconds": round(seconds, 2), "fast": args.fast,
                                 "answers_per_second": round(len(rows) / seconds, 1), "items": per_item}
    ok = True
    for item_id, scores in truth.items():
        predicted = [results[f"{item_id}:{n}"] for n in range(len(scores))]
        entry = manifest["items"][item_id]
        entry = single_entry(entry) if args.fast else entry
        qwk = quadratic_weighted_kappa(scores, predicted, entry["labels"])
        exported = entry["qwk"]["test"]["qwk_onnx"]
        per_item[item_id] = {"qwk_http": qwk, "qwk_export": exported, "version": entry["version"],
                             "truth": scores, "predicted": predicted}
        ok &= abs(qwk - exported) < 1e-9
    report["all_match"] = ok
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({**report, "items": {item_id: {key: value for key, value in figures.items()
                                                    if key not in ("truth", "predicted")}
                                          for item_id, figures in per_item.items()}}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
