"""`python -m bench.ensemble_configs`: the serving cost of each kind of ensemble the accuracy report compares.

For each kind, the committed ensembles are re-pointed at it (training's `apply_choice`, in a scratch copy of
adapters/), its ensemble entries are exported into a scratch copy of the full export (golden-answer check:
the heads and trunks are those the full check passed), and the engine scores the same class sets of ASAP
test answers in this process with the same threads, one kind after another. Kinds whose members are all
exported already (the shipped one's members and subsets of them) are measured. Writes
bench/results/ensemble_configs.json: answers/s per kind beside its trunk and member runs and the lever
study's mean QWK figures (reports/levers.json), and the cost relative to the single head.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.batch_http import class_sets, engine_alone
from bench.server import REPO
from export.options import ExportOptions
from export.pipeline import export_all
from training.ensemble_build import apply_choice, read_ensemble, write_ensemble

KINDS = ["minilm-en", "minilm-en+lexical", "minilm-en+minilm-en/s14", "minilm-en+e5-multilingual",
         "minilm-en+e5-multilingual+lexical", "minilm-en+e5-multilingual+minilm-en/s14+lexical"]


def point_at(adapters: Path, kind: str) -> None:
    """Every item's ensemble.json serves `kind` (its candidates were all evaluated when it was built)."""
    for folder in sorted((adapters / "ensembles").iterdir()):
        ensemble = read_ensemble(adapters, folder.name)
        if ensemble is not None:
            write_ensemble(adapters, apply_choice(ensemble, kind))


def measure(kind: str, adapters: Path, artifacts: Path, scratch: Path, threads: int,
            sets: list[list[tuple[str, str]]]) -> float:
    work = scratch / kind.replace("/", "_")
    shutil.copytree(adapters, work / "adapters")
    shutil.copytree(artifacts, work / "onnx")  # a real copy: the export rewrites files in place
    point_at(work / "adapters", kind)
    export_all(ExportOptions(work / "adapters", work / "onnx", validate="golden", log=lambda _: None))
    seconds = engine_alone(work / "onnx", True, threads, sets)
    shutil.rmtree(work)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ensemble_configs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", default=REPO / "adapters", type=Path)
    parser.add_argument("--artifacts", default=REPO / "build" / "onnx", type=Path, help="a full export")
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", default=KINDS)
    parser.add_argument("--out", default=REPO / "bench" / "results" / "ensemble_configs.json", type=Path)
    args = parser.parse_args(argv)
    levers: dict[str, Any] = json.loads((REPO / "reports" / "levers.json").read_text())
    sets = class_sets(args.answers, args.rows)
    answers = sum(len(rows) for rows in sets)
    report: dict[str, Any] = {"answers": answers, "rows_per_request": args.rows, "threads": args.threads,
                              "kinds": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for kind in args.kinds:
            seconds = measure(kind, args.adapters, args.artifacts, Path(scratch), args.threads, sets)
            lever = levers[kind]
            report["kinds"][kind] = {
                "engine_answers_per_s": round(answers / seconds, 1), "trunk_runs": lever["trunk_runs"],
                "member_runs": lever["member_runs"],
                "crossfit_validation_qwk": round(lever["crossfit_validation_qwk"], 4),
                "test_qwk": round(lever["test_qwk"], 4)}
            print(kind, report["kinds"][kind], flush=True)
    single = report["kinds"].get("minilm-en", {}).get("engine_answers_per_s")
    if single:
        for entry in report["kinds"].values():
            entry["cost_vs_single_head"] = round(single / entry["engine_answers_per_s"], 2)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
