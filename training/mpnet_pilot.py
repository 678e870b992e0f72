"""`python -m training.mpnet_pilot`: is all-mpnet-base-v2 worth serving as a third backbone?

The pilot's MPNet adapters (`python -m training train --backbone mpnet-en --items asap-07 asap-08 --adapters
runs/mpnet-pilot`: LoRA r=8 on its top three layers, the E5 recipe) are compared on validation, what would
choose, with the items' committed adapters:
- alone, against the item's own MiniLM adapter (and its E5 adapter);
- as an ensemble member: the shipped ensemble with MPNet added (a third trunk), and with MPNet in place of
  E5 (two trunks, as shipped), scored exactly as the build scores ensembles (5-fold cross-fitted validation
  QWK; test QWK beside, never used);
- its cost: answers/s of each backbone's whole model (trunk + head, PyTorch, 2 threads) on the same answers
  in the same run.
Writes reports/mpnet.json, which the accuracy report renders.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.artifacts import current_record
from training.asap import load_asap_item
from training.backbones import resolve_backbone
from training.encoder import build_model
from training.ensemble_members import adapter_candidate
from training.lever_study import score_way
from training.pilot_study import pilot_records, pilot_rows
from training.report import shipped_kind
from training.tokenize import encode_texts, load_tokenizer
from training.weights_study import load

REPO = Path(__file__).resolve().parents[1]
ADAPTERS = REPO / "adapters"
PILOT = REPO / "runs" / "mpnet-pilot"
RESULTS = REPO / "reports" / "mpnet.json"
MPNET = "mpnet-en"
TIMED_ANSWERS = 256


def ensemble_ways(item_id: str, pilot: Path, shipped: str) -> dict[str, dict[str, Any]]:
    """The shipped kind, + MPNet, and with MPNet in place of E5; each alone for reference."""
    labels, members, truth = load(item_id)
    record = next(r for r in pilot_records(pilot) if r.config.get("source_item") == item_id)
    probabilities = adapter_candidate(record, load_asap_item(item_id)).probabilities
    if any(len(probabilities[split]) != len(truth[split]) for split in truth):
        raise SystemExit(f"{item_id}: the MPNet adapter scored other answers than the ensemble build kept")
    labels = [*labels, MPNET]
    members = {split: [*members[split], probabilities[split]] for split in members}
    shipped_members = shipped.split("+")
    ways = {
        "shipped": shipped_members,
        "shipped+mpnet": [*shipped_members, MPNET],
        "shipped, mpnet for e5": [MPNET if label == "e5-multilingual" else label for label in shipped_members],
        "minilm-en alone": ["minilm-en"], "mpnet alone": [MPNET], "e5 alone": ["e5-multilingual"],
    }
    scored = {}
    for name, way_labels in ways.items():
        entry = score_way(labels, members, truth, tuple(labels.index(label) for label in way_labels))
        scored[name] = {key: entry[key] for key in ("crossfit_validation_qwk", "test_qwk", "trunk_runs",
                                                   "member_runs")}
    return scored


def answers_per_second(backbone_name: str, texts: list[str]) -> float:
    """Whole-model throughput (trunk + one head), batches of 32 in the answers' order."""
    backbone = resolve_backbone(backbone_name)
    model = build_model(backbone.path, backbone.spec.split_layer, 4, dropout=0.0).eval()
    ids = encode_texts(load_tokenizer(backbone.path, backbone.spec.max_length), texts, backbone.spec.text_prefix)
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(ids), 32):
            rows = ids[start:start + 32]
            width = max(map(len, rows))
            batch = torch.tensor([row + [0] * (width - len(row)) for row in rows])
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
            model(batch, mask)
    return len(texts) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.mpnet_pilot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pilot", default=PILOT, type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    shipped = shipped_kind(ADAPTERS)
    if shipped is None:
        raise SystemExit("no single shipped ensemble kind in adapters/ensembles")
    rows = pilot_rows(args.pilot, ADAPTERS)
    for row in rows:
        e5 = current_record(ADAPTERS, f"{row['item']}-e5")
        row["ensembles"] = ensemble_ways(row["item"], args.pilot, shipped)
        row["test_e5"] = e5.metrics["test"]["qwk"] if e5 else None
    texts = [text for text, _ in load_asap_item(rows[0]["item"]).validation][:TIMED_ANSWERS]
    speed = {name: answers_per_second(name, texts) for name in ("minilm-en", "e5-multilingual", MPNET)}
    result = {"shipped_kind": shipped, "items": rows, "answers_per_second": speed, "timed_answers": len(texts)}
    RESULTS.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for row in rows:
        print(row["item"], {name: round(entry["crossfit_validation_qwk"], 4)
                            for name, entry in row["ensembles"].items()})
    print({name: round(value, 1) for name, value in speed.items()},
          f"MPNet costs {speed['minilm-en'] / speed[MPNET]:.1f}x MiniLM per answer")
    print("mean validation change vs own adapter:",
          round(float(np.mean([r["validation_adapted"] - r["validation_plain"] for r in rows])), 4))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
