"""Ensemble items: after every backbone's heads are exported (each checked against PyTorch on its own), an item
with an ensemble in adapters/ensembles/ becomes one served item whose members are those heads and its
lexical member, combined as training chose. Its single-member entry stays under "fast".

The combination is checked through ONNX Runtime as served: on the golden answers always, and with
`--validate full` on every validation and test answer, whose QWK must reproduce what training measured."""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from core.decoding import decode, softmax
from core.ensemble import combine
from core.fingerprints import file_sha256, fingerprint
from core.lexical_runtime import LexicalHead
from core.manifest import (
    HISTORY_KEPT,
    LEXICAL_FORMAT,
    BackboneFiles,
    Member,
    backbone_files,
    ensemble_item_entry,
    item_spec,
)
from core.onnx_runtime import AdapterHead, HeadRunner, MergedHead, TextEncoder, load_session, trunk_head_logits
from export.options import ExportOptions
from export.tiers import balanced_ensemble, balanced_signatures, read_ensembles, tier_members
from export.validate import ValidationError, forget_logits, recall_logits
from training.ensemble_build import ENSEMBLE_FILE, ensemble_folder
from training.metrics import quadratic_weighted_kappa

TextsOf = Callable[[str], dict[str, tuple[list[str], list[int]]]]
QWK_TOLERANCE = 0.01  # ONNX vs PyTorch logits differ by <= 1e-4: a handful of borderline answers may flip


def adapters_in_ensembles(adapters: Path) -> set[str]:
    """The adapter keys some item's chosen ensemble (or its balanced tier, export/tiers.py) names as members."""
    chosen = {str(member["adapter"]) for path in sorted((adapters / "ensembles").glob(f"*/{ENSEMBLE_FILE}"))
              for member in json.loads(path.read_text())["members"] if member["kind"] == "adapter"}
    return chosen | tier_members(adapters)


def apply_ensembles(manifest: dict[str, Any], old: dict[str, Any], options: ExportOptions,
                    texts_of: TextsOf) -> None:
    """Turn each item with a chosen multi-member ensemble into an ensemble entry, in place.
    texts_of(item_id) -> {split: (texts, 0-based labels)} where the item's answers are at hand."""
    try:
        _apply(manifest, old, options, texts_of)
    finally:
        _sessions.cache_clear()  # the export's trunk sessions and its heads' logits are not kept past it
        forget_logits()


def _apply(manifest: dict[str, Any], old: dict[str, Any], options: ExportOptions, texts_of: TextsOf) -> None:
    ensembles = read_ensembles(options.adapters)
    signatures = balanced_signatures(ensembles)
    for ensemble in ensembles:
        item_id = str(ensemble["fast"]["adapter"])  # served under its first member's key (asap-01, x-e5)
        if len(ensemble["members"]) < 2 or item_id not in manifest["items"]:
            continue
        single = manifest["items"][item_id]
        if single["version"] != ensemble["fast"]["version"]:
            # The adapter was retrained after its ensemble was chosen: the ensemble is stale, never served.
            options.log(f"{item_id}: its ensemble was built on {ensemble['fast']['version']}, not "
                        f"{single['version']}; served by its own head until `training ensemble` rebuilds it")
            continue
        missing = _missing(ensemble, manifest)
        if missing:
            options.log(f"{item_id}: served by its own head until {', '.join(missing)} are exported")
            continue
        member_entries = _member_entries(ensemble, manifest)
        balanced = balanced_ensemble(ensemble, signatures)
        if balanced is not None and _missing(balanced, manifest):
            options.log(f"{item_id}: no balanced tier until {', '.join(_missing(balanced, manifest))} are exported")
            balanced = None
        key = fingerprint({"ensemble": ensemble["fingerprint"], "single": single.get("key"),
                           "members": [entry.get("key", entry.get("sha256")) for entry in member_entries],
                           "balanced": balanced["version"] if balanced is not None else None})
        previous = old.get("items", {}).get(item_id, {})
        if previous.get("key") == key and _files_present(options.out, previous) and (
                options.validate == "golden" or previous.get("validation") == "full"
                or (options.recheck is not None and item_id not in options.recheck)):
            manifest["items"][item_id] = {**previous, "fast": single}
            continue
        entry = _ensemble_entry(item_id, ensemble, member_entries, single, key, manifest, options, texts_of)
        if balanced is not None:
            entry["tiers"] = {"balanced": _ensemble_entry(item_id, balanced, _member_entries(balanced, manifest),
                                                          single, key, manifest, options, texts_of)}
        manifest["items"][item_id] = entry
        if previous and previous.get("version") != entry["version"]:
            history = [previous, *manifest.get("history", {}).get(item_id, [])]
            manifest.setdefault("history", {})[item_id] = history[:HISTORY_KEPT]
        options.log(f"{item_id}: ensemble {entry['version']} of {len(entry['members'])} members")


def _files_present(out: Path, entry: dict[str, Any]) -> bool:
    entries = [entry, *entry.get("tiers", {}).values()]
    return all((out / member["file"]).is_file() for one in entries for member in one.get("members", []))


def _member_entries(ensemble: dict[str, Any], manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [manifest["items"][m["adapter"]] if m["kind"] == "adapter" else m for m in ensemble["members"]]


def _missing(ensemble: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """Its adapter members not exported at the version it names."""
    return [f"{m['adapter']}@{m['version']}" for m in ensemble["members"] if m["kind"] == "adapter"
            and manifest["items"].get(m["adapter"], {}).get("version") != m["version"]]


def _lexical_member(item_id: str, folder: Path, member: dict[str, Any], options: ExportOptions) -> Member:
    source = folder / member["file"]
    if file_sha256(source) != member["sha256"]:
        raise ValidationError(f"{item_id}: {source} does not match the hash in its {ENSEMBLE_FILE}")
    target = options.out / "items" / item_id / f"lexical-{member['sha256'][:12]}.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or file_sha256(target) != member["sha256"]:
        shutil.copyfile(source, target)
    return Member("", "", LEXICAL_FORMAT, target, member["sha256"], target.stat().st_size, float(member["weight"]))


def _ensemble_entry(item_id: str, ensemble: dict[str, Any], member_entries: list[dict[str, Any]],
                    single: dict[str, Any], key: str, manifest: dict[str, Any], options: ExportOptions,
                    texts_of: TextsOf) -> dict[str, Any]:
    golden_texts = list(single["golden"]["texts"])
    members: list[Member] = []
    for chosen, entry in zip(ensemble["members"], member_entries, strict=True):
        if chosen["kind"] == "lexical":
            lexical = _lexical_member(item_id, ensemble_folder(options.adapters, ensemble["item_id"]), chosen,
                                      options)
            golden = LexicalHead(lexical.path).probabilities(golden_texts).round(6).tolist()
            members.append(replace(lexical, source=f"lexical@{ensemble['version']}", golden=golden))
            continue
        if list(entry["golden"]["texts"]) != golden_texts:
            raise ValidationError(f"{item_id}: member {chosen['adapter']} was exported with other golden answers")
        spec = item_spec(options.out, chosen["adapter"], entry, manifest)
        members.append(Member(spec.backbone, spec.backbone_sha256, spec.head_format, spec.path, spec.sha256,
                              spec.nbytes, float(chosen["weight"]), source=f"{chosen['adapter']}@{spec.version}",
                              golden=spec.golden_logits))
    weights = [member.weight for member in members]
    golden = combine([np.asarray(m.golden, dtype=np.float64) if not m.on_trunk else softmax(np.asarray(m.golden))
                      for m in members], weights)
    thresholds = ensemble["decoding"]["thresholds"]
    checked: dict[str, Any] = {}
    texts = texts_of(item_id) if options.validate == "full" else {}
    recorded_qwk = {"validation": ensemble["chosen"]["validation_qwk"], "test": ensemble["chosen"]["test"]["qwk"]}
    if ensemble.get("lexical_fitted_on") == "train+validation":
        # The served lexical member was refitted on the validation answers after the choice (add-item): only
        # test, held out from both fits, can reproduce what training measured.
        del recorded_qwk["validation"]
    for split, recorded in recorded_qwk.items():
        if split not in texts:
            continue
        answers, truth = texts[split]
        probabilities = combine([_member_probabilities(member, answers, manifest, options) for member in members],
                                weights)
        qwk = quadratic_weighted_kappa(truth, list(decode(probabilities, thresholds)),
                                       list(range(probabilities.shape[1])))
        if abs(qwk - float(recorded)) > QWK_TOLERANCE:
            raise ValidationError(f"{item_id} ensemble: {split} QWK through ONNX {qwk:.4f}, training measured "
                                  f"{float(recorded):.4f}")
        checked[split] = {"n": len(answers), "qwk_onnx": qwk, "qwk_training": float(recorded)}
    return ensemble_item_entry(
        options.out, key=key, version=str(ensemble["version"]), members=members, fast=single,
        thresholds=thresholds, review_threshold=float(ensemble["review_threshold"]), golden_texts=golden_texts,
        golden_probabilities=golden.round(6).tolist(),
        model_card={**single.get("model_card", {}), "test_qwk": ensemble["chosen"]["test"]["qwk"],
                    "ensemble": {"members": [m.source for m in members], "selection": ensemble.get("selection"),
                                 **{name: ensemble["chosen"][name] for name in
                                    ("crossfit_validation_qwk", "validation_qwk", "trunk_runs", "head_runs")}}},
        check={"validation": "full" if checked and len(checked) == len(recorded_qwk) else "golden",
               "validated_on": {name: value["n"] for name, value in checked.items()} | {"golden": len(golden_texts)},
               "qwk": checked, "members_checked": "each head against PyTorch at its own export"},
    )


def _member_probabilities(member: Member, answers: list[str], manifest: dict[str, Any],
                          options: ExportOptions) -> NDArray[np.float64]:
    """A member's probabilities through ONNX Runtime as served (the exported trunk, tokenizer and head); the
    head's own check in this export already computed them where it ran (export.validate.recall_logits)."""
    if not member.on_trunk:
        return LexicalHead(member.path).probabilities(answers)
    known = recall_logits(str(manifest["items"].get(member.source.split("@")[0], {}).get("key", "")), answers)
    if known is not None:
        return softmax(known)
    files = backbone_files(options.out, manifest["backbones"][member.backbone])
    trunk, shared_head, encoder = _sessions(files, options.threads)
    head: HeadRunner = (AdapterHead(shared_head, member.path)
                        if member.head_format == "ort-adapter" and shared_head is not None
                        else MergedHead(member.path, options.threads))
    return softmax(trunk_head_logits(trunk, head, [ids for ids, _ in encoder.encode(answers)]))


@functools.cache
def _sessions(files: BackboneFiles, threads: int) -> tuple[ort.InferenceSession, ort.InferenceSession | None,
                                                           TextEncoder]:
    """One trunk, shared head graph and tokenizer per backbone for all ensembles of an export (a trunk
    session takes a second or two to build; ten items × two splits × two trunks would rebuild it 40 times)."""
    shared_head = (load_session(files.adapter_head_path, threads, arena=False)
                   if files.adapter_head_path is not None else None)
    return (load_session(files.trunk_path, threads, arena=True), shared_head,
            TextEncoder(files.tokenizer_path, files.max_length, files.text_prefix))
