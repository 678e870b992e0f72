"""One item's head: written as an .onnx_adapter (or a merged head graph), validated against PyTorch on its
validation and test answers, and described for the manifest (one member, decoding, golden answers)."""

from __future__ import annotations

from typing import Any

import onnxruntime as ort

from core.fingerprints import file_sha256
from core.manifest import Member, item_entry
from core.onnx_runtime import AdapterHead, HeadRunner, MergedHead, trunk_head_logits
from export import graphs
from export.evidence import EvidenceRow, build_evidence
from export.options import EXPORTER_VERSION, GOLDEN_COUNT, ExportOptions, item_texts
from export.validate import compare, qwk_of, remember_logits, require_match, torch_logits
from training.artifacts import AdapterRecord, adapter_model
from training.backbones import ResolvedBackbone
from training.encoder import merge_lora
from training.tokenize import encode_texts


def export_item(record: AdapterRecord, backbone_name: str, backbone: ResolvedBackbone, weights: Any,
                tokenizer: Any, trunk: ort.InferenceSession, shared_head: ort.InferenceSession | None, item_key: str,
                options: ExportOptions, evidence_rows: list[EvidenceRow] | None = None) -> dict[str, Any]:
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
    texts = item_texts(record, options)
    prefix = backbone.spec.text_prefix
    checked: dict[str, Any] = {}
    worst = 0.0
    compared = texts if options.validate == "full" else {}  # golden: the golden answers below only
    for name, (answers, truth) in compared.items():
        rows = encode_texts(tokenizer, answers, prefix)
        reference = torch_logits(model, rows)
        comparison = compare(reference, trunk_head_logits(trunk, head, rows), thresholds)
        require_match(f"{record.item_id} {name}", comparison)
        remember_logits(item_key, answers, comparison.onnx_logits)
        worst = max(worst, comparison.max_abs_logit_diff)
        checked[name] = {"n": len(rows), "qwk_onnx": qwk_of(comparison.onnx_logits, truth, thresholds),
                         "qwk_torch": qwk_of(reference, truth, thresholds)}
    # Golden answers travel with the artifact: the service scores them before it swaps a head in. Without the
    # item's data (a Docker build) they are placeholders named after the data set item, not the adapter, so
    # every member of one ensemble is checked on the same texts.
    golden_texts = (texts.get("test", ([], []))[0][:GOLDEN_COUNT]
                    or [f"golden answer {n} for {record.source_item}" for n in range(GOLDEN_COUNT)])
    golden_rows = encode_texts(tokenizer, golden_texts, prefix)
    golden_logits = torch_logits(model, golden_rows)
    golden_check = compare(golden_logits, trunk_head_logits(trunk, head, golden_rows), thresholds)
    require_match(f"{record.item_id} golden", golden_check)
    worst = max(worst, golden_check.max_abs_logit_diff)
    evidence = build_evidence(record, evidence_rows or [], tokenizer, prefix, trunk, head, options)
    metrics = record.metrics
    member = Member(backbone_name, backbone.weights_sha256, "ort-adapter" if shared_head is not None else "merged",
                    path, file_sha256(path), path.stat().st_size)
    return item_entry(
        options.out, key=item_key, version=record.version, member=member, labels=config["labels"],
        thresholds=thresholds, review_threshold=config["review_threshold"], golden_texts=golden_texts,
        golden_logits=golden_logits.round(6).tolist(),
        model_card={
            "test_qwk": metrics.get("test", {}).get("qwk"),
            "test_accuracy": metrics.get("test", {}).get("accuracy"),
            "test_macro_f1": metrics.get("test", {}).get("macro_f1"),
            "human_qwk": metrics.get("human_qwk"),
            "sizes": metrics.get("sizes"),
        },
        check={
            "validation": options.validate,  # which check against PyTorch this head passed
            "validated_on": {name: value["n"] for name, value in checked.items()} | {"golden": len(golden_rows)},
            "qwk": dict(checked),
            "max_abs_logit_diff": worst,
        },
        evidence=evidence,
    )
