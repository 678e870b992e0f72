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

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from app.onnx_parts import AdapterHead, HeadRunner, MergedHead, load_session
from export import graphs
from export.validate import (
    ValidationError,
    compare,
    onnx_logits,
    qwk_of,
    require_match,
    torch_logits,
)
from training.artifacts import AdapterRecord, adapter_model, load_record, read_manifest
from training.asap import ASAP_ITEMS, load_asap_item
from training.backbones import DEFAULT_BACKBONE, ResolvedBackbone, file_sha256, resolve_backbone
from training.encoder import build_model, load_backbone_weights, merge_lora
from training.tokenize import encode_texts, load_tokenizer

HeadFormat = Literal["ort-adapter", "merged"]
EXPORTER_VERSION = 1
MANIFEST_FORMAT = 2  # 2: "backbones" lists every trunk; the top-level trunk keys mirror the primary one
GOLDEN_COUNT = 8
MAX_MEAN_QWK_DROP = 0.005


def _key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ExportOptions:
    adapters: Path
    out: Path
    head_format: HeadFormat = "ort-adapter"
    int8: bool = False
    threads: int = 2
    data_root: Path | None = None
    backbone: str | None = None  # a local HF folder instead of the registered name (tests)
    backbone_folders: dict[str, Path] = field(default_factory=dict)  # backbone name -> local folder (tests)
    # Validation/test answers of items whose data is not the ASAP set: item -> split -> (texts, 0-based labels)
    item_texts: dict[str, dict[str, tuple[list[str], list[int]]]] = field(default_factory=dict)
    # Export only these backbones (None: all). The others keep their previous export as it was, so adding an
    # English item never re-validates ten multilingual heads.
    backbones: tuple[str, ...] | None = None
    fp16: bool = False  # also a half-precision trunk for the GPU (inputs and outputs stay int64 / float32)
    log: Callable[[str], None] = print


def _item_texts(record: AdapterRecord, options: ExportOptions) -> dict[str, tuple[list[str], list[int]]]:
    """Validation + test answers of the item where its data is at hand (ASAP items: the shared data set)."""
    if record.item_id in options.item_texts:
        return options.item_texts[record.item_id]
    data_root = options.data_root
    source_item = str(record.config.get("source_item", record.item_id))  # asap-01-e5 -> asap-01
    if source_item not in ASAP_ITEMS:
        return {}
    try:
        item = load_asap_item(source_item, data_root)
    except Exception:  # data set not on this machine (e.g. a Docker build): golden answers only
        return {}
    low = item.score_range.low
    return {name: ([t for t, _ in rows], [s - low for _, s in rows])
            for name, rows in (("validation", item.validation), ("test", item.test))}


def _check_backbone(record: AdapterRecord, backbone: ResolvedBackbone) -> None:
    wanted = record.config["backbone"]["weights_sha256"]
    if wanted != backbone.weights_sha256:
        raise ValidationError(
            f"{record.item_id} {record.version} was trained on backbone weights {wanted[:12]}..., "
            f"but {backbone.spec.name} here has {backbone.weights_sha256[:12]}...; retrain it"
        )


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "backbone"


def _old_backbone_entry(old: dict[str, Any], name: str) -> dict[str, Any]:
    """The previous export's entry for this backbone (a format-1 manifest holds one, at the top level)."""
    if "backbones" in old:
        entry: dict[str, Any] = old["backbones"].get(name, {})
        return entry
    if old.get("backbone", {}).get("name") == name:
        return {key: old[key] for key in ("backbone", "trunk", "tokenizer", "adapter_head", "int8") if key in old}
    return {}


def export_all(options: ExportOptions) -> dict[str, Any]:
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    old: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    adapters = read_manifest(options.adapters)["items"]
    if not adapters:
        raise ValidationError(f"no adapters listed in {options.adapters / 'manifest.json'}")
    records = {item_id: load_record(options.adapters / item_id / entry["current"])
               for item_id, entry in sorted(adapters.items())}
    groups: dict[str, dict[str, AdapterRecord]] = {}
    for item_id, record in records.items():
        groups.setdefault(record.config["backbone"]["name"], {})[item_id] = record
    wanted = set(groups) if options.backbones is None else set(options.backbones)
    if unknown := wanted - set(groups):
        raise ValidationError(f"no adapters of backbone(s) {sorted(unknown)} in {options.adapters}")
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
        manifest["backbones"][name] = _export_backbone(name, groups[name], folder, old, manifest, options)
    manifest.update(manifest["backbones"][primary])  # the single-backbone (format 1) view
    for item_id, history in old.get("history", {}).items():
        if item_id in manifest["items"] and item_id not in manifest.get("history", {}):
            manifest.setdefault("history", {})[item_id] = history
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(manifest_path)
    return manifest


def _carried_backbone(old: dict[str, Any], name: str, records: dict[str, AdapterRecord],
                      log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A backbone left out of this export: its previous entry and items, or None when it was never exported
    here. Items of a format-1 manifest name no backbone: they are its one backbone's."""
    entry = _old_backbone_entry(old, name)
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


def _export_backbone(name: str, records: dict[str, AdapterRecord], folder: Path, old: dict[str, Any],
                     manifest: dict[str, Any], options: ExportOptions) -> dict[str, Any]:
    """One backbone's trunk, tokenizer and shared head graph, and the heads of its items."""
    out = options.out
    splits = {r.config["split_layer"] for r in records.values()}
    if len(splits) != 1:
        raise ValidationError(f"items of backbone {name} must share one split layer; found {sorted(splits)}")
    backbone = resolve_backbone(str(options.backbone_folders.get(name) or options.backbone or name))
    split_layer = splits.pop()
    for record in records.values():
        _check_backbone(record, backbone)
    weights = load_backbone_weights(backbone.path)
    max_length = backbone.spec.max_length
    old_entry = _old_backbone_entry(old, name)
    entry: dict[str, Any] = {
        "backbone": {**backbone.describe(), "name": name, "split_layer": split_layer, "max_length": max_length,
                     "text_prefix": backbone.spec.text_prefix, "hidden": weights[0].hidden},
    }
    trunk_key = _key({"backbone": backbone.weights_sha256, "S": split_layer, "max_length": max_length,
                      "opset": graphs.OPSET, "exporter": EXPORTER_VERSION})
    folder.mkdir(parents=True, exist_ok=True)
    trunk_path = folder / "trunk.onnx"
    tokenizer_path = folder / "tokenizer.json"
    old_trunk = old_entry.get("trunk", {})
    trunk_current = trunk_path.is_file() and file_sha256(trunk_path) == old_trunk.get("sha256")
    old_items = old.get("items", {})
    if old_trunk.get("key") == trunk_key and trunk_current and tokenizer_path.is_file():
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
        shared_head = _shared_head(records, backbone, weights, split_layer, out, old_entry, entry, options)

    tokenizer = load_tokenizer(backbone.path, max_length)
    for item_id, record in tqdm(records.items(), desc=f"{name} heads", unit="item"):
        item_key = _key({"trunk": trunk_key, "format": options.head_format,
                         "adapter": file_sha256(record.folder / "adapter.safetensors"),
                         "config": record.config.get("fingerprint"), "version": record.version,
                         "head_graph": entry.get("adapter_head", {}).get("key")})
        previous = old_items.get(item_id, {})
        if previous.get("key") == item_key and (out / previous["file"]).is_file():
            manifest["items"][item_id] = previous
            continue
        manifest["items"][item_id] = {
            **_export_item(record, backbone, weights, tokenizer, trunk, shared_head, item_key, options),
            "backbone": name, "backbone_sha256": backbone.weights_sha256,
        }
        # Earlier exported versions stay listed (and their files stay) so the service can roll back.
        history = [h for h in old.get("history", {}).get(item_id, []) if h["version"] != record.version]
        if previous and previous.get("version") != record.version:
            history = [previous, *[h for h in history if h["version"] != previous["version"]]]
        if history:
            manifest.setdefault("history", {})[item_id] = history[:5]
    items = {item_id: manifest["items"][item_id] for item_id in records}
    for variant, wanted in (("int8", options.int8), ("fp16", options.fp16)):
        if wanted:
            entry[variant] = _reduced_variant(variant, items, folder, tokenizer, entry, options)
        elif (variant in old_entry and (folder / f"trunk.{variant}.onnx").is_file()
              and old_trunk.get("key") == trunk_key):
            entry[variant] = old_entry[variant]
    return entry


def _shared_head(records: dict[str, AdapterRecord], backbone: ResolvedBackbone, weights: Any, split_layer: int,
                 out: Path, old: dict[str, Any], manifest: dict[str, Any], options: ExportOptions
                 ) -> ort.InferenceSession:
    """old/manifest: the previous and the new entry of this backbone."""
    shapes = {(r.config["train"]["targets"], r.config["train"]["rank"]) for r in records.values()}
    if len(shapes) != 1:
        raise ValidationError(f"ort-adapter format needs one LoRA layout for all items; found {shapes}")
    targets, rank = shapes.pop()
    key = _key({"backbone": backbone.weights_sha256, "S": split_layer, "targets": targets, "rank": rank,
                "opset": graphs.OPSET, "exporter": EXPORTER_VERSION})
    path = out / f"head_adapter-{key}.onnx"
    first = next(iter(records.values()))
    model = adapter_model(first, backbone.path, weights)
    names = graphs.adapter_input_names(model.head)
    if old.get("adapter_head", {}).get("key") != key or not path.is_file():
        graphs.export_adapter_head(model, path)
        options.log(f"shared adapter head graph: exported ({path.name})")
    manifest["adapter_head"] = {"file": path.name, "key": key, "sha256": file_sha256(path),
                                "adapter_inputs": names, "bytes": path.stat().st_size}
    return load_session(path, options.threads, arena=False)


def _export_item(record: AdapterRecord, backbone: ResolvedBackbone, weights: Any, tokenizer: Any,
                 trunk: ort.InferenceSession, shared_head: ort.InferenceSession | None, item_key: str,
                 options: ExportOptions) -> dict[str, Any]:
    config = record.config
    model = adapter_model(record, backbone.path, weights)
    folder = options.out / "items" / record.item_id
    folder.mkdir(parents=True, exist_ok=True)
    head: HeadRunner
    if shared_head is not None:
        path = folder / f"{record.version}.onnx_adapter"
        adapter = ort.AdapterFormat()
        adapter.set_adapter_version(int(record.version.lstrip("v")))
        adapter.set_model_version(EXPORTER_VERSION)
        state = {name: param.detach().numpy().copy()
                 for name, param in zip(graphs.adapter_input_names(model.head),
                                        [p for _, p in graphs._adapter_params(model.head)], strict=True)}
        adapter.set_parameters({name: ort.OrtValue.ortvalue_from_numpy(value) for name, value in state.items()})
        adapter.export_adapter(str(path))
        head = AdapterHead(shared_head, path)
    else:
        path = folder / f"{record.version}.onnx"
        merged = adapter_model(record, backbone.path, weights)
        merge_lora(merged)
        graphs.export_merged_head(merged, path)
        head = MergedHead(path, options.threads)

    thresholds = config["decoding"]["thresholds"]
    texts = _item_texts(record, options)
    prefix = backbone.spec.text_prefix
    checked: dict[str, Any] = {}
    worst = 0.0
    for name, (answers, truth) in texts.items():
        rows = encode_texts(tokenizer, answers, prefix)
        reference = torch_logits(model, rows)
        comparison = compare(reference, onnx_logits(trunk, head, rows), thresholds)
        require_match(f"{record.item_id} {name}", comparison)
        worst = max(worst, comparison.max_abs_logit_diff)
        checked[name] = {"n": len(rows), "qwk_onnx": qwk_of(comparison.onnx_logits, truth, thresholds),
                         "qwk_torch": qwk_of(reference, truth, thresholds)}
    # Golden answers travel with the artifact: the service scores them before it swaps a head in.
    golden_texts = (texts.get("test", ([], []))[0][:GOLDEN_COUNT]
                    or [f"golden answer {n} for {record.item_id}" for n in range(GOLDEN_COUNT)])
    golden_rows = encode_texts(tokenizer, golden_texts, prefix)
    golden_logits = torch_logits(model, golden_rows)
    golden_check = compare(golden_logits, onnx_logits(trunk, head, golden_rows), thresholds)
    require_match(f"{record.item_id} golden", golden_check)
    worst = max(worst, golden_check.max_abs_logit_diff)
    metrics = record.metrics
    return {
        "key": item_key,
        "version": record.version,
        "format": "ort-adapter" if shared_head is not None else "merged",
        "file": str(path.relative_to(options.out)),
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "labels": config["labels"],
        "thresholds": thresholds,
        "review_threshold": config["review_threshold"],
        "max_abs_logit_diff": worst,
        "validated_on": {name: value["n"] for name, value in checked.items()} | {"golden": len(golden_rows)},
        "qwk": {name: value for name, value in checked.items()},
        "golden": {"texts": golden_texts, "logits": golden_logits.round(6).tolist()},
        "model_card": {
            "test_qwk": metrics.get("test", {}).get("qwk"),
            "test_accuracy": metrics.get("test", {}).get("accuracy"),
            "test_macro_f1": metrics.get("test", {}).get("macro_f1"),
            "human_qwk": metrics.get("human_qwk"),
            "sizes": metrics.get("sizes"),
        },
    }


def _write_reduced_trunk(variant: str, source: Path, path: Path) -> None:
    if variant == "int8":  # CPU: dynamic per-channel int8 weights
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(source), str(path), per_channel=True, weight_type=QuantType.QInt8)
        return
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # GPU: fp16 weights and activations; the graph's inputs/outputs keep their types, so the service and
    # the heads (fp32) feed and read it unchanged.
    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(path))


def _reduced_variant(variant: str, items: dict[str, dict[str, Any]], folder: Path, tokenizer: Any,
                     entry: dict[str, Any], options: ExportOptions) -> dict[str, Any]:
    """An int8 (CPU) or fp16 (GPU) trunk; its test-QWK change per item decides whether serving may use it.

    The change is measured here with ONNX Runtime's CPU kernels; a GPU's fp16 kernels round differently
    (fp16 accumulation), so an fp16 figure is the graph's precision loss, not a CUDA measurement."""
    out = options.out
    path = folder / f"trunk.{variant}.onnx"
    _write_reduced_trunk(variant, folder / "trunk.onnx", path)
    trunk8 = load_session(path, options.threads, arena=True)
    shared = None
    if "adapter_head" in entry:
        shared = load_session(out / entry["adapter_head"]["file"], options.threads, arena=False)
    changes: dict[str, float] = {}
    for item_id, item in items.items():
        record = load_record(options.adapters / item_id / item["version"])
        texts = _item_texts(record, options)
        if "test" not in texts:
            continue
        head: HeadRunner = (AdapterHead(shared, out / item["file"]) if shared is not None
                            else MergedHead(out / item["file"], options.threads))
        answers, truth = texts["test"]
        rows = encode_texts(tokenizer, answers, entry["backbone"]["text_prefix"])
        qwk8 = qwk_of(onnx_logits(trunk8, head, rows), truth, item["thresholds"])
        item["qwk"]["test"][f"qwk_{variant}"] = qwk8
        changes[item_id] = qwk8 - item["qwk"]["test"]["qwk_onnx"]
    mean_change = float(np.mean(list(changes.values()))) if changes else float("nan")
    allowed = bool(changes) and -mean_change <= MAX_MEAN_QWK_DROP
    options.log(f"{entry['backbone']['name']} {variant} trunk: mean test-QWK change {mean_change:+.4f} "
                f"-> allowed={allowed}")
    return {
        "file": str(path.relative_to(out)), "sha256": file_sha256(path), "bytes": path.stat().st_size,
        "test_qwk_change": changes, "mean_test_qwk_change": mean_change, "allowed": allowed,
        "rule": f"serving may use {variant} only when the mean test-QWK drop is <= {MAX_MEAN_QWK_DROP}",
        "measured_on": "CPUExecutionProvider",
    }
