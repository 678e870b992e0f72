"""The accuracy report's pilot sections: pilot adapters as ensemble members (reports/members_<label>.json,
`python -m studies.member_study`), MPNet-base as a third backbone (reports/mpnet.json, `python -m
studies.mpnet_pilot`) and the adapter's rank and split point per item (reports/shape.json, `python -m
studies.shape_study`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studies.pilot_study import mean_change
from studies.report_data import fmt as _fmt
from studies.report_data import table as _table

Json = dict[str, Any]


def _read(path: Path) -> Json | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _versus(entry: Json) -> str:
    versus = entry.get("test_vs_shipped")
    return f"{versus['difference']:+.3f} [{versus['low']:+.3f}, {versus['high']:+.3f}]" if versus else "–"


def members_table(members: Json) -> list[str]:
    shipped = members["shipped_kind"]
    rows = [[" + ".join(kind.split("+")) + (" **(shipped)**" if kind == shipped else ""),
             _fmt(entry["crossfit_validation_qwk"]), _fmt(entry["test_qwk"]), _versus(entry), str(entry["trunk_runs"])]
            for kind, entry in sorted(members["kinds"].items(), key=lambda kv: -kv[1]["crossfit_validation_qwk"])]
    choice = " + ".join(members["build_would_choose"].split("+"))
    return [f"Pooled over {len(members['items'])} items, {members['kinds_compared']} kinds within "
            f"{members['max_trunks']} trunks: the build would choose **{choice}**; "
            f"the shipped kind ranks {members['shipped_rank']}.", "",
            *_table(["members", "cross-fitted val QWK", "test QWK", "test − shipped [95 %]", "trunk runs"], rows)]


def domain_members_section(reports: Path) -> list[str]:
    members = _read(reports / "members_minilm-en-asap.json")
    if not members:
        return []
    return ["## Domain-adapted adapters as ensemble members", "",
            "`python -m studies.member_study --pilot runs/domain-pilot --label minilm-en-asap`: the ten items' "
            "adapters on the domain-adapted backbone join the build's candidates (a trunk of their own), scored "
            "as the build scores ensembles.", "", *members_table(members)]


def mpnet_section(reports: Path) -> list[str]:
    pilot = _read(reports / "mpnet.json")
    members = _read(reports / "members_mpnet-en.json")
    if not pilot or not pilot["items"]:
        return []
    rows = [[row["item"], _fmt(row["validation_plain"]), _fmt(row.get("validation_e5")),
             _fmt(row["validation_adapted"]),
             _fmt(row["test_plain"]), _fmt(row.get("test_e5")), _fmt(row["test_adapted"]),
             f"{row['train_seconds_adapted']:.0f}"] for row in pilot["items"]]
    speed = pilot["answers_per_second"]
    alone = mean_change(pilot["items"], "validation")
    return ["## MPNet-base pilot", "",
            "all-mpnet-base-v2 (110 M parameters, 12 layers, 768 wide; `--backbone mpnet-en`) with LoRA r=8 on its "
            "top three layers (the E5 recipe); `python -m studies.mpnet_pilot`. Alone (best-epoch validation QWK, "
            f"what chooses; mean change against the own MiniLM adapter {alone:+.3f}):", "",
            *_table(["item", "val MiniLM", "val E5", "val MPNet", "test MiniLM", "test E5", "test MPNet",
                     "MPNet training s"], rows), "",
            *(["As an ensemble member (within three trunks, so that it may join the shipped kind):", "",
               *members_table(members), ""] if members else []),
            f"Cost, whole model per answer (PyTorch, 2 threads, the same {pilot['timed_answers']} answers, one run): "
            + ", ".join(f"{name} {value:.1f} answers/s" for name, value in speed.items())
            + f" — MPNet costs {speed['minilm-en'] / speed['mpnet-en']:.1f}× MiniLM and "
              f"{speed['e5-multilingual'] / speed['mpnet-en']:.1f}× E5."]


def shape_section(reports: Path) -> list[str]:
    shape = _read(reports / "shape.json")
    if not shape:
        return []
    shapes = sorted(shape["every_item"], key=lambda name: name != "r8 S3")  # the committed shape first
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
            "`python -m studies.shape_study`: each item trained again at rank 16 (alpha 32) and with LoRA from "
            "layer 2 (four adapted layers), everything else as committed (r8 S3); per item the shape with the "
            "best validation QWK is chosen. Serving a per-item S would also take one trunk per split point (a "
            "backbone's trunk is shared at one S).", "",
            *_table(["item", *[f"val {s}" for s in shapes], "chosen", "test r8 S3", "test chosen"], rows), "",
            "Every item at one shape, mean validation / test QWK: "
            + "; ".join(f"{s} {_fmt(m['validation_qwk'])} / {_fmt(m['test_qwk'])}" for s, m in means.items())
            + f". Chosen per item − committed, test: {versus['difference']:+.3f} "
              f"[{versus['low']:+.3f}, {versus['high']:+.3f}] (95 % paired bootstrap)."
            + "".join(f" At rank 16, {item_id} collapsed to one score (validation QWK 0)." for item_id, entry in
                      shape["items"].items() if entry["shapes"].get("r16 S3", {}).get("validation_qwk") == 0.0)]


def capacity_section(reports: Path, adapters: Path) -> list[str]:
    """MPNet adapters on both raters (adapters/<item>-mp-r2) and reports/members_capacity.json: alone against
    MiniLM's both-raters adapter, and as a third trunk decided with stated uncertainty."""
    capacity = _read(reports / "members_capacity.json")
    if not capacity:
        return []
    from training.artifacts import current_record

    rows = []
    for item_id in capacity["items"]:
        mpnet, minilm = current_record(adapters, f"{item_id}-mp-r2"), current_record(adapters, f"{item_id}-r2")
        if mpnet is None or minilm is None:
            continue
        rows.append([item_id, _fmt(minilm.metrics["validation"]["qwk"]), _fmt(mpnet.metrics["validation"]["qwk"]),
                     _fmt(minilm.metrics["test"]["qwk"]), _fmt(mpnet.metrics["test"]["qwk"]),
                     f"{mpnet.metrics.get('seconds', {}).get('total', float('nan')):.0f}"])
    decision = capacity["decision"]
    kinds = decision["kinds"]
    shipped, best = "minilm-en+e5-multilingual+minilm-en/s14+lexical", decision["best"]
    lines = ["## MPNet-base on both raters, and as a third trunk", "",
             "`scorer train --backbone mpnet-en --raters both` (adapters/<item>-mp-r2, an extra member), against "
             "MiniLM's both-raters adapter (<item>-r2):", "",
             *_table(["item", "val MiniLM r2", "val MPNet r2", "test MiniLM r2", "test MPNet r2", "MPNet s"], rows)]
    if shipped in kinds:
        gap = kinds[shipped]
        lines += ["", f"As a member (`python -m studies.capacity_members`, {len(capacity['items'])} items, up to "
                  f"{capacity['max_trunks']} trunks, {len(kinds)} kinds): the best kind is {best} at mean "
                  f"cross-fitted validation QWK {_fmt(kinds[best]['mean_crossfit_qwk'])} (test "
                  f"{_fmt(kinds[best]['mean_test_qwk'])}); the shipped kind scores {_fmt(gap['mean_crossfit_qwk'])} "
                  f"(test {_fmt(gap['mean_test_qwk'])}), a gap of {gap['gap_to_best']:+.4f} with 95 % interval "
                  f"{gap['gap_interval'][0]:+.4f} … {gap['gap_interval'][1]:+.4f}: within the noise of the "
                  "validation answers, for a third trunk that costs 7.6× MiniLM's per answer. The cheapest kind "
                  f"within the noise is {decision['cheapest_within_noise']}."]
    return lines


def e5_recipe_section(reports: Path) -> list[str]:
    """reports/e5_recipe.json (`python -m studies.shape_study --backbone e5-multilingual ...`): E5's split point
    and learning rate, against its committed adapters (S = 9, the learning rate each was trained with)."""
    recipe = _read(reports / "e5_recipe.json")
    if not recipe:
        return []
    # sorted by name after the committed recipe: a set's order would change the table between runs
    shapes = sorted({shape for entry in recipe["items"].values() for shape in entry["shapes"]},
                    key=lambda name: (name != "committed", name))
    rows = [[item_id, *[f"{_fmt(entry['shapes'][s]['validation_qwk'])} / {_fmt(entry['shapes'][s]['test_qwk'])}"
                        if s in entry["shapes"] else "–" for s in shapes], entry["chosen"]]
            for item_id, entry in recipe["items"].items()]
    means = recipe["every_item"]
    rows.append(["**mean**", *[f"{_fmt(means[s]['validation_qwk'])} / {_fmt(means[s]['test_qwk'])}"
                               if s in means else "–" for s in shapes], ""])
    versus = recipe["chosen_per_item"]["test_vs_own_adapter"]
    return ["## E5's recipe: split point and learning rate", "",
            "E5-small's frozen features beat MiniLM's (probe 0.686 vs 0.602) but its adapters did not; its split "
            "point and learning rate had never been studied. Each item trained again with LoRA from layer 6 "
            "(six adapted layers instead of three) and at learning rate 1e-3 (instead of 2e-3), everything else "
            "as committed (`python -m studies.shape_study --backbone e5-multilingual`); per item the best "
            "validation QWK chooses (ties keep the committed recipe). Validation / test QWK:", "",
            *_table(["item", *shapes, "chosen"], rows), "",
            f"Chosen per item against the committed adapters on test: {versus['difference']:+.4f} (95 % paired "
            f"bootstrap {versus['low']:+.4f} … {versus['high']:+.4f})."]


def e5_shipped_section(adapters: Path) -> list[str]:
    """E5's served adapters after the recipe study: every item whose E5 adapter was retrained at 1e-3, its
    earlier version at 2e-3 beside it (both kept in adapters/<item>-e5/; validation chose the change)."""
    rows, pairs = [], []
    manifest = json.loads((adapters / "manifest.json").read_text())["items"]
    for key in sorted(k for k in manifest if k.endswith("-e5")):
        versions = {}
        for version in manifest[key]["versions"]:
            folder = adapters / key / version
            train = json.loads((folder / "config.json").read_text())["train"]
            if not train.get("class_weighted"):  # items 5 and 6: a class-weighted recipe, not this comparison
                versions[train["learning_rate"]] = json.loads((folder / "metrics.json").read_text())
        if manifest[key]["current"] and 2e-3 in versions and 1e-3 in versions:
            old, new = versions[2e-3], versions[1e-3]
            pairs.append([old["validation"]["qwk"], new["validation"]["qwk"], old["test"]["qwk"], new["test"]["qwk"]])
            rows.append([key, f"{_fmt(old['validation']['qwk'])} / {_fmt(old['test']['qwk'])}",
                         f"{_fmt(new['validation']['qwk'])} / {_fmt(new['test']['qwk'])}"])
    if not rows:
        return []
    means = [sum(column) / len(pairs) for column in zip(*pairs, strict=True)]
    rows.append(["**mean**", f"{_fmt(means[0])} / {_fmt(means[2])}", f"{_fmt(means[1])} / {_fmt(means[3])}"])
    return ["## E5 at learning rate 1e-3, shipped", "",
            "After the study above, E5's adapters train at 1e-3 by default (`training/backbones.py`, "
            "`BackboneSpec.learning_rate`; the German small-data check was level, 0.802 vs 0.802) and every E5 "
            "adapter trained at 2e-3 was retrained (items 5 and 6 were already at 1e-3 with class weights and "
            "stay). The change was chosen on the study's four items; here every retrained item, validation / "
            "test QWK as decoded, of the same item's adapter at each rate (the ensembles were chosen again on "
            "validation afterwards):", "",
            *_table(["E5 adapter", "lr 2e-3", "lr 1e-3 (served)"], rows)]
