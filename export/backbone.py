"""One backbone's part of an export: its trunk, tokenizer and shared head graph, then its items' heads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import onnxruntime as ort
from tqdm import tqdm

from core.fingerprints import file_sha256, fingerprint
from core.manifest import HISTORY_KEPT, backbone_entries
from core.onnx_runtime import load_session
from export import graphs
from export.evidence import evidence_fingerprint, evidence_rows
from export.fused import fused_variant
from export.grouped import check_grouped_head
from export.item import export_item
from export.options import EXPORTER_VERSION, ExportOptions, check_backbone
from export.reduced import reduced_variant
from export.validate import ValidationError
from training.artifacts import AdapterRecord, adapter_model
from training.backbones import ResolvedBackbone, resolve_backbone
from training.encoder import build_model, load_backbone_weights
from training.tokenize import load_tokenizer


def export_backbone(name: str, records: dict[str, AdapterRecord], folder: Path, old: dict[str, Any],
                     manifest: dict[str, Any], options: ExportOptions) -> dict[str, Any]:
    """One backbone's trunk, tokenizer and shared head graph, and the heads of its items."""
    out = options.out
    splits = {r.config["split_layer"] for r in records.values()}
    if len(splits) != 1:
        raise ValidationError(f"items of backbone {name} must share one split layer; found {sorted(splits)}")
    backbone = resolve_backbone(str(options.backbone_folders.get(name) or options.backbone or name))
    split_layer = splits.pop()
    for record in records.values():
        check_backbone(record, backbone)
    weights = load_backbone_weights(backbone.path)
    max_length = backbone.spec.max_length
    old_entry = backbone_entries(old).get(name, {})
    entry: dict[str, Any] = {
        "backbone": {**backbone.describe(), "name": name, "split_layer": split_layer, "max_length": max_length,
                     "text_prefix": backbone.spec.text_prefix, "hidden": weights[0].hidden},
    }
    trunk_key = fingerprint({"backbone": backbone.weights_sha256, "S": split_layer, "max_length": max_length,
                      "opset": graphs.OPSET, "exporter": EXPORTER_VERSION})
    folder.mkdir(parents=True, exist_ok=True)
    trunk_path = folder / "trunk.onnx"
    tokenizer_path = folder / "tokenizer.json"
    old_trunk = old_entry.get("trunk", {})
    trunk_current = trunk_path.is_file() and file_sha256(trunk_path) == old_trunk.get("sha256")
    old_items = old.get("items", {})
    trunk_reused = old_trunk.get("key") == trunk_key and trunk_current and tokenizer_path.is_file()
    fresh: set[str] = set()  # items exported anew in this run
    if trunk_reused:
        options.log(f"{name} trunk: current")
    else:
        started = time.perf_counter()
        graphs.export_trunk(build_model(backbone.path, split_layer, 2, backbone=weights), trunk_path)
        load_tokenizer(backbone.path, max_length).save(str(tokenizer_path))
        options.log(f"{name} trunk: exported in {time.perf_counter() - started:.1f} s")
        old_items = {}  # every head of this backbone depends on its trunk
    entry["trunk"] = {"file": str(trunk_path.relative_to(out)), "sha256": file_sha256(trunk_path),
                      "key": trunk_key, "bytes": trunk_path.stat().st_size}
    entry["tokenizer"] = {"file": str(tokenizer_path.relative_to(out)), "sha256": file_sha256(tokenizer_path)}

    trunk = load_session(trunk_path, options.threads, arena=True)
    shared_head: ort.InferenceSession | None = None
    if options.head_format == "ort-adapter":
        shared_head = shared_head_graph(records, backbone, weights, split_layer, out, old_entry, entry, options)

    tokenizer = load_tokenizer(backbone.path, max_length)
    for item_id, record in tqdm(records.items(), desc=f"{name} heads", unit="item"):
        previous = old_items.get(item_id, {})
        rows = evidence_rows(record, options) if options.evidence else []
        # No rows at hand (--no-evidence, or the data is elsewhere): the index built before for this head stays.
        evidence_key = evidence_fingerprint(rows, options) or (previous.get("evidence") or {}).get("key")
        item_key = fingerprint({"trunk": trunk_key, "format": options.head_format,
                         "adapter": file_sha256(record.folder / "adapter.safetensors"),
                         "config": record.config.get("fingerprint"), "version": record.version,
                         "head_graph": entry.get("adapter_head", {}).get("key"), "outputs": graphs.HEAD_OUTPUTS,
                         "evidence": evidence_key})
        checked_enough = (options.validate == "golden" or previous.get("validation", "full") == "full"
                          or (options.recheck is not None and item_id not in options.recheck))
        if previous.get("key") == item_key and (out / previous["file"]).is_file() and checked_enough:
            manifest["items"][item_id] = previous
            continue
        fresh.add(item_id)
        manifest["items"][item_id] = export_item(record, name, backbone, weights, tokenizer, trunk, shared_head,
                                                 item_key, options, rows)
        if not rows and previous.get("key") == item_key and previous.get("evidence"):
            manifest["items"][item_id]["evidence"] = previous["evidence"]  # the same head, checked again
        # Earlier exported versions stay listed (and their files stay) so the service can roll back.
        history = [h for h in old.get("history", {}).get(item_id, []) if h["version"] != record.version]
        if previous and previous.get("version") != record.version:
            history = [previous, *[h for h in history if h["version"] != previous["version"]]]
        if history:
            manifest.setdefault("history", {})[item_id] = history[:HISTORY_KEPT]
    items = {item_id: manifest["items"][item_id] for item_id in records}
    # The graphs checked over all items are checked again only when the trunk or an item changed.
    unchanged = trunk_reused and not fresh
    old_grouped = old_entry.get("grouped_head", {})
    if "grouped_head" in entry and unchanged and old_grouped.get("sha256") == entry["grouped_head"]["sha256"]:
        entry["grouped_head"]["max_abs_golden_diff"] = old_grouped["max_abs_golden_diff"]
    elif "grouped_head" in entry:
        worst = check_grouped_head(out / entry["grouped_head"]["file"], items, out, trunk, tokenizer,
                                   backbone.spec.text_prefix, options.threads)
        entry["grouped_head"]["max_abs_golden_diff"] = worst
        options.log(f"{name} batched head graph: every item's golden answers in one mixed batch, "
                    f"max |logit diff| {worst:.1e}")
    if options.fused:
        entry["fused"] = fused_variant(items, folder, tokenizer, entry, weights[0].heads, options,
                                       old_entry.get("fused", {}), fresh if trunk_reused else None)
    # fp16 (the GPU's) is made from the fused graph where that validated: fused fp16 ran the trunk in 0.72x the
    # plain fp16 time on an H200 (bench/results/fusion_cuda.json). int8 (the CPU's) from the plain graph: the
    # CPU gains nothing from the fusion (bench/results/fusion.json).
    fused_ok = bool(entry.get("fused", {}).get("allowed"))
    for variant, wanted in (("int8", options.int8), ("fp16", options.fp16)):
        if wanted:
            source = folder / ("trunk.fused.onnx" if variant == "fp16" and fused_ok else "trunk.onnx")
            entry[variant] = reduced_variant(variant, items, folder, tokenizer, entry, options, source)
        elif (variant in old_entry and (folder / f"trunk.{variant}.onnx").is_file()
              and old_trunk.get("key") == trunk_key
              and ("head" not in old_entry[variant] or (out / old_entry[variant]["head"]["file"]).is_file())):
            entry[variant] = old_entry[variant]
    return entry


def shared_head_graph(records: dict[str, AdapterRecord], backbone: ResolvedBackbone, weights: Any, split_layer: int,
                 out: Path, old: dict[str, Any], manifest: dict[str, Any], options: ExportOptions
                 ) -> ort.InferenceSession:
    """old/manifest: the previous and the new entry of this backbone."""
    shapes = {(r.config["train"]["targets"], r.config["train"]["rank"]) for r in records.values()}
    if len(shapes) != 1:
        raise ValidationError(f"ort-adapter format needs one LoRA layout for all items; found {shapes}")
    targets, rank = shapes.pop()
    key = fingerprint({"backbone": backbone.weights_sha256, "S": split_layer, "targets": targets, "rank": rank,
                "opset": graphs.OPSET, "exporter": EXPORTER_VERSION, "outputs": graphs.HEAD_OUTPUTS})
    path = out / f"head_adapter-{key}.onnx"
    first = next(iter(records.values()))
    model = adapter_model(first, backbone.path, weights)
    names = graphs.adapter_input_names(model.head)
    if old.get("adapter_head", {}).get("key") != key or not path.is_file():
        graphs.export_adapter_head(model, path)
        options.log(f"shared adapter head graph: exported ({path.name})")
    manifest["adapter_head"] = {"file": path.name, "key": key, "sha256": file_sha256(path),
                                "adapter_inputs": names, "bytes": path.stat().st_size}
    grouped = out / f"head_grouped-{key}.onnx"
    if not options.grouped:
        return load_session(path, options.threads, arena=False)
    if old.get("grouped_head", {}).get("key") != key or not grouped.is_file():
        graphs.export_grouped_head(model, grouped)
        options.log(f"batched head graph: exported ({grouped.name})")
    manifest["grouped_head"] = {"file": grouped.name, "key": key, "sha256": file_sha256(grouped),
                                "bytes": grouped.stat().st_size}
    return load_session(path, options.threads, arena=False)
