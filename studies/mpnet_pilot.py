"""`python -m studies.mpnet_pilot`: is all-mpnet-base-v2 worth serving as a third backbone?

The pilot's MPNet adapters (`python -m training train --backbone mpnet-en --items asap-07 asap-08 --adapters
runs/mpnet-pilot`: LoRA r=8 on its top three layers, the E5 recipe) are compared on validation, what would
choose, with the items' committed adapters:
- alone, against the item's own MiniLM adapter (reports/mpnet.json);
- as an ensemble member, within three trunks so that it may join the shipped kind rather than replace E5
  (studies.member_study: reports/members_mpnet-en.json);
- its cost: answers/s of each backbone's whole model (trunk + head, PyTorch, 2 threads) on the same answers
  in the same run (reports/mpnet.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from core.onnx_runtime import pad
from studies.member_study import REPORTS, study
from studies.pilot_study import best_validation_qwk, mean_change, pilot_rows
from studies.report import shipped_kind
from training.artifacts import current_record
from training.asap import load_asap_item
from training.backbones import resolve_backbone
from training.encoder import build_model
from training.tokenize import encode_texts, load_tokenizer

REPO = Path(__file__).resolve().parents[1]
ADAPTERS = REPO / "adapters"
PILOT = REPO / "runs" / "mpnet-pilot"
RESULTS = REPORTS / "mpnet.json"
MPNET = "mpnet-en"
TIMED_ANSWERS = 256


def answers_per_second(backbone_name: str, texts: list[str]) -> float:
    """Whole-model throughput (trunk + one head), batches of 32 in the answers' order."""
    backbone = resolve_backbone(backbone_name)
    model = build_model(backbone.path, backbone.spec.split_layer, 4, dropout=0.0).eval()
    ids = encode_texts(load_tokenizer(backbone.path, backbone.spec.max_length), texts, backbone.spec.text_prefix)
    batches = [pad(ids[start:start + 32]) for start in range(0, len(ids), 32)]
    with torch.no_grad():
        model(torch.from_numpy(batches[0][0][:1]), torch.from_numpy(batches[0][1][:1]))  # warm-up, not timed
        started = time.perf_counter()
        for batch, mask in batches:
            model(torch.from_numpy(batch), torch.from_numpy(mask))
    return len(texts) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.mpnet_pilot", description=__doc__,
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
        row["validation_e5"] = best_validation_qwk(e5.metrics) if e5 else None
        row["test_e5"] = e5.metrics["test"]["qwk"] if e5 else None
    members = study([row["item"] for row in rows], args.pilot.resolve(), MPNET, shipped, max_trunks=3)
    (REPORTS / f"members_{MPNET}.json").write_text(json.dumps(members, indent=1, sort_keys=True) + "\n")
    texts = [text for text, _ in load_asap_item(rows[0]["item"]).validation][:TIMED_ANSWERS]
    speed = {name: answers_per_second(name, texts) for name in ("minilm-en", "e5-multilingual", MPNET)}
    result = {"shipped_kind": shipped, "items": rows, "answers_per_second": speed, "timed_answers": len(texts)}
    RESULTS.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for kind, entry in members["kinds"].items():
        print(f"{kind:70s} val {entry['crossfit_validation_qwk']:.4f} test {entry['test_qwk']:.4f}")
    print({name: round(value, 1) for name, value in speed.items()},
          f"MPNet costs {speed['minilm-en'] / speed[MPNET]:.1f}x MiniLM per answer")
    print(f"mean validation change vs own adapter: {mean_change(rows, 'validation'):+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
