"""Build (incrementally) and validate the artifact folder the service loads.

Layout of the output folder (one trunk per backbone; the primary backbone's files sit at the top, as
in the single-backbone format 1, so format-1 readers still find them):
  manifest.json                 what is here, with hashes, input names, validation figures
  tokenizer.json                the primary backbone's training tokenizer with its truncation
  trunk.onnx [trunk.int8.onnx]  its embeddings + layers below S, shared by every item of that backbone
  backbones/<name>/...          the same three files for every further backbone
  head_adapter-<key>.onnx       a shared head graph per backbone (LoRA + classifier as inputs), ort-adapter
  items/<id>/<ver>.onnx_adapter per-item tensors for the shared head graph (~0.1-1 MB)
  items/<id>/<ver>.onnx         per-item merged head graph, format merged
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from core.manifest import MANIFEST_FORMAT, backbone_entries, read_manifest, single_view, write_manifest
from export import graphs
from export.backbone import export_backbone
from export.ensemble import adapters_in_ensembles, apply_ensembles
from export.options import EXPORTER_VERSION, ExportOptions, item_texts
from export.validate import ValidationError
from training.artifacts import AdapterRecord, load_record
from training.artifacts import read_manifest as read_adapters
from training.backbones import DEFAULT_BACKBONE

__all__ = ["ExportOptions", "export_all"]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "backbone"


def export_all(options: ExportOptions) -> dict[str, Any]:
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    exported: dict[str, Any] = read_manifest(out) if (out / "manifest.json").is_file() else {}
    old = single_view(exported)  # each backbone's heads are exported (or kept) as single items first
    adapters = read_adapters(options.adapters)["items"]
    if not adapters:
        raise ValidationError(f"no adapters listed in {options.adapters / 'manifest.json'}")
    records = {item_id: load_record(options.adapters / item_id / entry["current"])
               for item_id, entry in sorted(adapters.items()) if entry.get("current")}  # not refused candidates
    # Extra members (another seed, both raters: adapters with a member tag) are exported only where a chosen
    # ensemble serves them; an unchosen candidate is evidence for the accuracy report, not a served item.
    serving = adapters_in_ensembles(options.adapters)
    records = {item_id: record for item_id, record in records.items()
               if not record.config.get("member_tag") or item_id in serving}
    groups: dict[str, dict[str, AdapterRecord]] = {}
    for item_id, record in records.items():
        groups.setdefault(record.config["backbone"]["name"], {})[item_id] = record
    wanted = set(groups) if options.backbones is None else set(options.backbones)
    if unknown := wanted - set(groups):
        raise ValidationError(f"no adapters of backbone(s) {sorted(unknown)} in {options.adapters}")
    if options.validate == "golden" and (options.int8 or options.fp16):
        raise ValidationError("reduced-precision trunks are measured on every test answer: use --validate full")
    if options.backbone is not None and len(wanted) > 1:
        raise ValidationError(f"a backbone folder override needs items of one backbone; found {sorted(wanted)}")
    carried: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name, records_of in groups.items():
        kept = None if name in wanted else _carried_backbone(old, name, records_of, options.log)
        if kept is not None:
            carried[name] = kept
    served = wanted | set(carried)
    primary = DEFAULT_BACKBONE if DEFAULT_BACKBONE in served else sorted(served)[0]
    old_primary = old.get("primary_backbone") or old.get("backbone", {}).get("name")  # format 1: the only one
    if old_primary in set(carried) - {primary}:
        # The old primary's files sit at the top level, where the new primary's go: re-export it to its folder.
        del carried[old_primary]
        wanted.add(old_primary)

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "exporter_version": EXPORTER_VERSION, "opset": graphs.OPSET,
        "inputs": {"trunk": graphs.TRUNK_INPUTS, "head": graphs.HEAD_INPUTS},
        "dtypes": {"input_ids": "int64", "attention_mask": "int64", "hidden_states": "float32",
                   "logits": "float32"},
        "primary_backbone": primary, "backbones": {}, "items": {},
    }
    for name in [primary, *sorted(served - {primary})]:
        if name in carried:
            manifest["backbones"][name], kept_items = carried[name]
            manifest["items"].update(kept_items)
            options.log(f"{name}: kept as exported before ({len(kept_items)} items)")
            continue
        folder = out if name == primary else out / "backbones" / _slug(name)
        manifest["backbones"][name] = export_backbone(name, groups[name], folder, old, manifest, options)
    manifest.update(manifest["backbones"][primary])  # the single-backbone (format 1) view
    apply_ensembles(manifest, exported, options, lambda item_id: item_texts(records[item_id], options))
    # Items whose backbone was not exported this time and was never exported here: a later export adds them
    # (make serve exports the default backbone first); the service lists them as being prepared.
    manifest["pending"] = {item_id: {"backbone": record.config["backbone"]["name"], "version": record.version,
                                     "labels": record.config["labels"]}
                           for item_id, record in records.items() if item_id not in manifest["items"]}
    for item_id, history in old.get("history", {}).items():
        if item_id in manifest["items"] and item_id not in manifest.get("history", {}):
            manifest.setdefault("history", {})[item_id] = history
    write_manifest(out, manifest)
    return manifest


def _carried_backbone(old: dict[str, Any], name: str, records: dict[str, AdapterRecord],
                      log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A backbone left out of this export: its previous entry and items, or None when it was never exported
    here. Items of a format-1 manifest name no backbone: they are its one backbone's."""
    entry = backbone_entries(old).get(name, {})
    if not entry.get("trunk"):
        return None
    default = old.get("backbone", {}).get("name")
    items = {item_id: item for item_id, item in old.get("items", {}).items()
             if item.get("backbone", default) == name and item_id in records}
    stale = sorted(item_id for item_id, item in items.items() if item.get("version") != records[item_id].version)
    missing = sorted(set(records) - set(items))
    if stale or missing:
        log(f"{name}: not exported this time, so these adapters are not served at their current version: "
            f"{', '.join(stale + missing)} (export that backbone to serve them)")
    return entry, items
