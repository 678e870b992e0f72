"""`python -m training.both_raters --items asap-07 asap-08`: does training on both human raters help?

ASAP gives every training answer a second rater's score (`Score2`; none for test). Here each training answer
appears twice, once with each rater's score (raters who disagree teach the model that the answer sits
between two scores); validation and test keep `Score1`, the official score, so the figures compare with every
other one. Same recipe, seed and split as the committed adapter; the baseline is that committed adapter's
validation QWK (CPU training with a fixed seed repeats exactly). Writes reports/both_raters.json and .md.
A pilot: the choice is made on validation; test is reported beside it, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from training.artifacts import current_record
from training.asap import load_asap_item
from training.backbones import resolve_backbone
from training.pipeline import run_training
from training.trainer import TrainConfig

REPORTS = Path(__file__).resolve().parents[1] / "reports"
ADAPTERS = Path(__file__).resolve().parents[1] / "adapters"


def pilot(item_id: str) -> dict[str, Any]:
    record = current_record(ADAPTERS, item_id)
    if record is None:
        raise SystemExit(f"{item_id}: no committed adapter to compare with")
    config = TrainConfig(**{key: value for key, value in record.config["train"].items()
                            if key in TrainConfig.__dataclass_fields__})
    item = load_asap_item(item_id, raters="both")
    started = time.perf_counter()
    result = run_training(item, resolve_backbone("minilm-en"), config, f"{item_id} both raters")
    return {"train_answers": len(item.train), "seconds": round(time.perf_counter() - started, 1),
            "both_raters": {split: result.metrics[split]["qwk"] for split in ("validation", "test")},
            "score1_only": {split: record.metrics[split]["qwk"] for split in ("validation", "test")},
            "best_epoch": result.best_epoch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.both_raters", description=__doc__)
    parser.add_argument("--items", nargs="+", default=["asap-07", "asap-08"])
    args = parser.parse_args(argv)
    path = REPORTS / "both_raters.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for item_id in args.items:
        if item_id not in results:
            results[item_id] = pilot(item_id)
            path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    lines = ["# Both raters as training samples (pilot)", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             "| item | train answers (both raters) | validation QWK: Score1 only | both raters | test QWK: Score1 "
             "only | both raters | training s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for item_id, value in sorted(results.items()):
        lines.append(f"| {item_id} | {value['train_answers']} | {value['score1_only']['validation']:.3f} | "
                     f"{value['both_raters']['validation']:.3f} | {value['score1_only']['test']:.3f} | "
                     f"{value['both_raters']['test']:.3f} | {value['seconds']:.0f} |")
    (REPORTS / "both_raters.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
