"""`python -m studies.shape_study`: the adapter's rank and split point chosen per item, on validation.

Each item's committed adapter (rank 8, alpha 16, LoRA from layer S = 3) is compared with the same item
trained at rank 16 (alpha 32: the same alpha / rank scale) and with LoRA from layer S = 2 (four adapted
layers instead of three; a shallower shared trunk), everything else equal:

    python -m training train --rank 16 --alpha 32 --member-tag r16 --adapters runs/shape-sweep
    python -m training train --split-layer 2 --member-tag s2 --adapters runs/shape-sweep

Per item the shape with the best validation QWK (at its best epoch, what training's early stopping saw; ties
keep the committed shape) is chosen; its test QWK is compared with the committed adapter's, with a 95 % paired
bootstrap interval over each item's test answers. Test answers choose nothing. Writes reports/shape.json.

Other backbones and recipes the same way (#31's E5 study: split point and learning rate of E5's adapters):

    python -m training train --backbone e5-multilingual --split-layer 6 --member-tag s6 --adapters runs/e5-recipe
    python -m studies.shape_study --backbone e5-multilingual --sweep runs/e5-recipe --shape s6="r8 S6" \
        --out reports/e5_recipe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from core.decoding import decode
from studies.pilot_study import best_validation_qwk, pilot_records
from studies.report_ensembles import paired_bootstrap
from training.artifacts import AdapterRecord, current_record
from training.asap import ASAP_ITEMS, load_asap_item
from training.backbones import DEFAULT_BACKBONE, adapter_key
from training.ensemble_members import adapter_candidate
from training.metrics import quadratic_weighted_kappa

REPO = Path(__file__).resolve().parents[1]
ADAPTERS = REPO / "adapters"
SWEEP = REPO / "runs" / "shape-sweep"
RESULTS = REPO / "reports" / "shape.json"
OWN = "r8 S3"  # the committed recipe (for other backbones: their committed adapters' recipe)
SHAPES = {"r16": "r16 S3", "s2": "r8 S2"}  # member tag -> shape


def test_predictions(record: AdapterRecord) -> dict[str, list[int]]:
    """The adapter's test predictions as training decoded them (checked against its recorded test QWK)."""
    item = load_asap_item(record.source_item)
    probabilities = adapter_candidate(record, item).probabilities["test"]
    predicted = decode(probabilities, record.config["decoding"]["thresholds"])
    truth = [score - item.score_range.low for _, score in item.test]
    labels = list(range(item.score_range.size))
    qwk = quadratic_weighted_kappa(truth, [int(value) for value in predicted], labels)
    if abs(qwk - record.metrics["test"]["qwk"]) > 1e-6:
        raise SystemExit(f"{record.item_id}: test QWK {qwk:.6f} does not reproduce the recorded "
                         f"{record.metrics['test']['qwk']:.6f}")
    return {"truth": truth, "predicted": [int(value) for value in predicted]}


def choose_shape(validation_qwk: dict[str, float]) -> str:
    """The best validation QWK; a tie keeps the committed shape (a change must earn its retraining)."""
    return max(validation_qwk, key=lambda shape: (validation_qwk[shape], shape == OWN))


def item_shapes(item_id: str, sweep: Path, backbone: str = DEFAULT_BACKBONE,
                variants: dict[str, str] | None = None) -> dict[str, AdapterRecord]:
    own = current_record(ADAPTERS, adapter_key(item_id, backbone))
    if own is None:
        raise SystemExit(f"{item_id} has no committed {backbone} adapter")
    shapes = {OWN: own}
    for record in pilot_records(sweep):
        tag = str(record.config.get("member_tag", ""))
        if record.config.get("source_item") == item_id and tag in (variants or SHAPES):
            shapes[(variants or SHAPES)[tag]] = record
    return shapes


def study(items: list[str], sweep: Path, backbone: str = DEFAULT_BACKBONE,
          variants: dict[str, str] | None = None) -> dict[str, Any]:
    per_item: dict[str, Any] = {}
    own_scored, chosen_scored = {}, {}
    for item_id in items:
        shapes = item_shapes(item_id, sweep, backbone, variants)
        entry = {shape: {"validation_qwk": best_validation_qwk(r.metrics), "test_qwk": r.metrics["test"]["qwk"]}
                 for shape, r in shapes.items()}
        chosen = choose_shape({shape: scores["validation_qwk"] for shape, scores in entry.items()})
        per_item[item_id] = {"shapes": entry, "chosen": chosen}
        own_scored[item_id] = test_predictions(shapes[OWN])
        chosen_scored[item_id] = own_scored[item_id] if chosen == OWN else test_predictions(shapes[chosen])
    difference, low, high, _ = paired_bootstrap(own_scored, chosen_scored)
    complete = [shape for shape in [OWN, *(variants or SHAPES).values()]
                if all(shape in e["shapes"] for e in per_item.values())]
    return {
        "items": per_item,
        "every_item": {shape: {key: float(np.mean([e["shapes"][shape][key] for e in per_item.values()]))
                               for key in ("validation_qwk", "test_qwk")} for shape in complete},
        "chosen_per_item": {
            "validation_qwk": float(np.mean([e["shapes"][e["chosen"]]["validation_qwk"] for e in per_item.values()])),
            "test_qwk": float(np.mean([e["shapes"][e["chosen"]]["test_qwk"] for e in per_item.values()])),
            "test_vs_own_adapter": {"difference": difference, "low": low, "high": high}},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.shape_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", nargs="+", default=ASAP_ITEMS)
    parser.add_argument("--sweep", default=SWEEP, type=Path)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="whose committed adapters are the own shape")
    parser.add_argument("--shape", action="append", metavar="TAG=LABEL",
                        help="a member tag in the sweep and what it varies (default: r16, s2 as above)")
    parser.add_argument("--out", default=RESULTS, type=Path)
    args = parser.parse_args(argv)
    variants = dict(entry.split("=", 1) for entry in args.shape) if args.shape else None
    result = study(args.items, args.sweep, args.backbone, variants)
    result["backbone"] = args.backbone
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.backbone != DEFAULT_BACKBONE:  # OWN names MiniLM's committed shape; another backbone's is its own
        text = text.replace(f'"{OWN}"', '"committed"')
        result = json.loads(text)
    args.out.write_text(text + "\n")
    for shape, means in result["every_item"].items():
        print(f"{shape:8s} val {means['validation_qwk']:.4f} test {means['test_qwk']:.4f}")
    chosen = result["chosen_per_item"]
    versus = chosen["test_vs_own_adapter"]
    print(f"per item val {chosen['validation_qwk']:.4f} test {chosen['test_qwk']:.4f} "
          f"{versus['difference']:+.4f} [{versus['low']:+.4f}, {versus['high']:+.4f}]",
          {item_id: entry["chosen"] for item_id, entry in result["items"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
