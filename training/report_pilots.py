"""The accuracy report's pilot sections: MPNet-base as a third backbone (reports/mpnet.json,
`python -m training.mpnet_pilot`) and the adapter's rank and split point per item (reports/shape.json,
`python -m training.shape_study`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from training.report_data import fmt as _fmt
from training.report_data import table as _table

Json = dict[str, Any]


def _read(path: Path) -> Json | None:
    return json.loads(path.read_text()) if path.is_file() else None


def mpnet_section(reports: Path) -> list[str]:
    pilot = _read(reports / "mpnet.json")
    if not pilot or not pilot["items"]:
        return []
    rows = pilot["items"]
    ways = list(rows[0]["ensembles"])
    table = [[way, *[f"{_fmt(row['ensembles'][way]['crossfit_validation_qwk'])} / "
                     f"{_fmt(row['ensembles'][way]['test_qwk'])}" for row in rows],
              _fmt(np.mean([row["ensembles"][way]["crossfit_validation_qwk"] for row in rows])),
              str(rows[0]["ensembles"][way]["trunk_runs"])] for way in ways]
    speed = pilot["answers_per_second"]
    alone = np.mean([row["validation_adapted"] - row["validation_plain"] for row in rows])
    return ["## MPNet-base pilot", "",
            f"all-mpnet-base-v2 (110 M parameters, 12 layers, 768 wide; `--backbone mpnet-en`) with LoRA r=8 on its "
            f"top three layers (the E5 recipe), trained on {', '.join(row['item'] for row in rows)}; "
            "`python -m training.mpnet_pilot`. Alone, its best-epoch validation QWK differs from the own MiniLM "
            f"adapter's by {alone:+.3f} on average. As a member, scored as the build scores ensembles "
            "(cross-fitted validation QWK / test QWK):", "",
            *_table(["members", *[row["item"] for row in rows], "mean cross-fitted val", "trunk runs"], table), "",
            f"Cost, whole model per answer (PyTorch, 2 threads, the same {pilot['timed_answers']} answers): "
            + ", ".join(f"{name} {value:.1f} answers/s" for name, value in speed.items())
            + f" — MPNet costs {speed['minilm-en'] / speed['mpnet-en']:.1f}× MiniLM and "
              f"{speed['e5-multilingual'] / speed['mpnet-en']:.1f}× E5."]


def shape_section(reports: Path) -> list[str]:
    shape = _read(reports / "shape.json")
    if not shape:
        return []
    shapes = list(shape["every_item"])
    rows = [[item_id, *[_fmt(entry["shapes"][s]["validation_qwk"]) if s in entry["shapes"] else "–"
                        for s in shapes], entry["chosen"],
             _fmt(entry["shapes"]["r8 S3"]["test_qwk"]), _fmt(entry["shapes"][entry["chosen"]]["test_qwk"])]
            for item_id, entry in shape["items"].items()]
    means = shape["every_item"]
    chosen = shape["chosen_per_item"]
    versus = chosen["test_vs_own_adapter"]
    rows.append(["**mean**", *[_fmt(means[s]["validation_qwk"]) for s in shapes], "",
                 _fmt(means["r8 S3"]["test_qwk"]), _fmt(chosen["test_qwk"])])
    return ["## Adapter rank and split point per item", "",
            "`python -m training.shape_study`: each item trained again at rank 16 (alpha 32) and with LoRA from "
            "layer 2 (four adapted layers), everything else as committed (r8 S3); per item the shape with the "
            "best validation QWK is chosen.", "",
            *_table(["item", *[f"val {s}" for s in shapes], "chosen", "test r8 S3", "test chosen"], rows), "",
            "Every item at one shape, mean validation / test QWK / training seconds: "
            + "; ".join(f"{s} {_fmt(m['validation_qwk'])} / {_fmt(m['test_qwk'])} / {m['train_seconds']:.0f} s"
                        for s, m in means.items())
            + f". Chosen per item − committed, test: {versus['difference']:+.3f} "
              f"[{versus['low']:+.3f}, {versus['high']:+.3f}] (95 % paired bootstrap)."]
