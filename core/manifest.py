"""The artifact manifest (build/onnx/manifest.json): one schema, read and written only here.

Format 2 lists every backbone under "backbones" and mirrors the primary backbone's entry at the top level,
where format 1 (one backbone) kept it; `backbone_entries` is the one place that reads format 1.

An item is served by one or more *members*: a head on some backbone's trunk or a lexical model, combined
into one probability vector by the item's `combine` rule. A single-member item is written from its own
top-level keys (format, file, sha256, bytes, backbone, backbone_sha256); an ensemble item lists its members
under "members" with weights and keeps, under "fast", the single-member entry of its first member (what
the fast single-head mode serves). Decoding (thresholds), labels, review threshold, golden texts and the
version belong to the item; each ensemble member carries its own golden outputs (logits of a head on a
trunk, probabilities of a lexical member), checked when it is first loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from core.decoding import DEFAULT_REVIEW_THRESHOLD
from core.evidence import EvidenceFile
from core.item_ids import ITEM_ID

MANIFEST_FORMAT = 2
# The keys a format-1 manifest has at its top level for its single backbone (and format 2 mirrors there).
BACKBONE_KEYS = ("backbone", "trunk", "tokenizer", "adapter_head", "int8", "fp16")
HISTORY_KEPT = 5  # earlier exported versions per item, for rollback
COMBINE_RULES = ("single", "mean_probabilities")
LEXICAL_FORMAT = "lexical"  # a member that reads the answer's text (n-gram model), on no trunk
# What a deployment serves per item (SCORER_TIER; export/tiers.py chooses the balanced combination).
TIERS = ("fast", "balanced", "accurate")


@dataclass(frozen=True)
class Member:
    """One head on one backbone's trunk; `weight` in the item's combination."""

    backbone: str
    backbone_sha256: str
    head_format: str  # "ort-adapter" | "merged" on the backbone's trunk | "lexical" (reads the text)
    path: Path
    sha256: str
    nbytes: int
    weight: float = 1.0
    source: str = ""  # what it was made from, named in responses: "asap-01@v1", "lexical@ens-1a2b3c4d"
    golden: list[list[float]] = field(default_factory=list)  # its outputs on the item's golden texts

    @property
    def on_trunk(self) -> bool:
        return self.head_format != LEXICAL_FORMAT


@dataclass(frozen=True)
class ItemSpec:
    item_id: str
    version: str
    head_format: str  # the first member's, as below (the single-member view every caller uses today)
    path: Path
    labels: list[int]
    thresholds: list[float] | None
    review_threshold: float
    sha256: str
    nbytes: int
    model_card: dict[str, Any] = field(default_factory=dict)
    golden_texts: list[str] = field(default_factory=list)
    golden_logits: list[list[float]] = field(default_factory=list)
    backbone: str = ""  # the backbone it was trained on; it runs on that backbone's trunk only
    backbone_sha256: str = ""  # that backbone's weights when it was trained
    members: tuple[Member, ...] = ()  # empty: the one member described by the fields above
    combine: str = "single"
    evidence: EvidenceFile | None = None  # its human-scored answers in its first member's features, if exported

    # Cached (the spec is frozen): the scorer asks for these several times per answer, and each ask built the
    # single member anew (with the other host-path changes: 69 -> 54 us per answer, bench/host_path.py).
    @cached_property
    def key(self) -> tuple[str, str]:
        return (self.item_id, self.version)

    @cached_property
    def serving_members(self) -> tuple[Member, ...]:
        """The members that score it: an ensemble's list, or the one member its own fields describe."""
        if self.members:
            return self.members
        return (Member(self.backbone, self.backbone_sha256, self.head_format, self.path, self.sha256, self.nbytes,
                       source=f"{self.item_id}@{self.version}", golden=self.golden_logits),)

    @property
    def member_names(self) -> list[str]:
        """What responses and GET /items name: each member's source and version."""
        return [member.source for member in self.serving_members]

    @property
    def backbones(self) -> list[str]:
        """The trunks its members run on, in member order, each once."""
        return list(self._backbones)

    @cached_property
    def first_backbone(self) -> str:
        """The trunk whose tokens a prepared row carries as `encoded` (the others' are in `others`)."""
        return self._backbones[0]

    @cached_property
    def _backbones(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(member.backbone for member in self.serving_members if member.on_trunk))


@dataclass(frozen=True)
class BackboneFiles:
    """One backbone's trunk (and its reduced variants), tokenizer and shared head graph."""

    name: str
    weights_sha256: str
    trunk_path: Path
    trunk_sha256: str
    tokenizer_path: Path
    adapter_head_path: Path | None
    grouped_head_path: Path | None  # the batched head graph (core/grouped_head.py), where exported
    fused_path: Path | None  # the fused fp32 trunk (export/fused.py), only where it validated
    int8_path: Path | None  # only where the export allowed it
    int8_head_path: Path | None  # the per-item head graph in int8, served with the int8 trunk (export/reduced.py)
    fp16_path: Path | None  # likewise; for the GPU
    max_length: int
    text_prefix: str


@dataclass
class Artifacts:
    """An artifact folder as read. `items` is the map being served: a reload swaps one entry in place."""

    root: Path
    manifest: dict[str, Any]
    items: dict[str, ItemSpec]
    backbones: dict[str, BackboneFiles] = field(default_factory=dict)
    # Items with adapters whose backbone is not exported yet: id -> {"backbone", "version", "labels"}.
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def history(self, item_id: str) -> list[dict[str, Any]]:
        """Earlier exported versions of the item, newest first."""
        return list(self.manifest.get("history", {}).get(item_id, []))


def backbone_entries(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Format 2 lists every backbone; format 1 has one, described by its top-level keys."""
    if "backbones" in manifest:
        entries: dict[str, dict[str, Any]] = manifest["backbones"]
        return entries
    if "backbone" not in manifest:
        return {}
    single: dict[str, Any] = {key: manifest[key] for key in BACKBONE_KEYS if key in manifest}
    return {str(manifest["backbone"]["name"]): single}


def backbone_files(root: Path, entry: dict[str, Any]) -> BackboneFiles:
    head, int8, fp16, grouped, fused = (entry.get(key)
                                        for key in ("adapter_head", "int8", "fp16", "grouped_head", "fused"))
    return BackboneFiles(
        name=str(entry["backbone"]["name"]),
        weights_sha256=str(entry["backbone"]["weights_sha256"]),
        trunk_path=root / str(entry["trunk"]["file"]),
        trunk_sha256=str(entry["trunk"]["sha256"]),
        tokenizer_path=root / str(entry["tokenizer"]["file"]),
        adapter_head_path=root / str(head["file"]) if head else None,
        grouped_head_path=root / str(grouped["file"]) if grouped else None,
        fused_path=root / str(fused["file"]) if fused and fused.get("allowed") else None,
        int8_path=root / str(int8["file"]) if int8 and int8.get("allowed") else None,
        int8_head_path=root / str(int8["head"]["file"]) if int8 and int8.get("allowed") and "head" in int8 else None,
        fp16_path=root / str(fp16["file"]) if fp16 and fp16.get("allowed") else None,
        max_length=int(entry["backbone"]["max_length"]),
        text_prefix=str(entry["backbone"].get("text_prefix", "")),
    )


def _member(root: Path, entry: dict[str, Any], default_backbone: dict[str, Any]) -> Member:
    return Member(backbone=str(entry.get("backbone") or default_backbone.get("name", "")),
                  backbone_sha256=str(entry.get("backbone_sha256") or default_backbone.get("weights_sha256", "")),
                  head_format=str(entry["format"]), path=root / str(entry["file"]), sha256=str(entry["sha256"]),
                  nbytes=int(entry["bytes"]), weight=float(entry.get("weight", 1.0)),
                  source=str(entry.get("source", "")), golden=list(entry.get("golden", [])))


def item_spec(root: Path, item_id: str, entry: dict[str, Any], manifest: dict[str, Any] | None = None,
              tier: str = "accurate") -> ItemSpec:
    """manifest: only needed for format-1 entries, which do not name their backbone. tier (TIERS): `fast`, an
    ensemble item as its first member alone with that member's own decoding; `balanced`, its one-trunk
    combination where the export made one (else its accurate entry); `accurate`, the entry itself."""
    if (served := tier_entry(entry, tier)) is not entry:
        return item_spec(root, item_id, served, manifest)
    if not ITEM_ID.match(item_id):
        raise ValueError(f"manifest item id {item_id!r} is not a slug")
    default_backbone = (manifest or {}).get("backbone", {})
    first = _member(root, entry, default_backbone)
    members = tuple(_member(root, member, default_backbone) for member in entry.get("members", []))
    combine = str(entry.get("combine", "single"))
    if combine not in COMBINE_RULES or (combine == "single" and len(members) > 1):
        raise ValueError(f"manifest item {item_id!r}: combine rule {combine!r} with {len(members)} members")
    golden = entry.get("golden", {})
    return ItemSpec(
        item_id=item_id, version=str(entry["version"]), head_format=first.head_format, path=first.path,
        labels=[int(label) for label in entry["labels"]], thresholds=entry.get("thresholds"),
        review_threshold=float(entry.get("review_threshold", DEFAULT_REVIEW_THRESHOLD)),
        sha256=first.sha256, nbytes=first.nbytes, model_card=dict(entry.get("model_card", {})),
        golden_texts=list(golden.get("texts", [])), golden_logits=list(golden.get("logits", [])),
        backbone=first.backbone, backbone_sha256=first.backbone_sha256,
        members=members if len(members) > 1 else (), combine=combine, evidence=_evidence(root, entry.get("evidence")),
    )


def tier_entry(entry: dict[str, Any], tier: str) -> dict[str, Any]:
    """The part of an item's entry that a tier serves (the entry itself where the tier has nothing of its own)."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; one of {TIERS}")
    if tier == "fast":
        return single_entry(entry)
    if tier == "balanced":
        served: dict[str, Any] = entry.get("tiers", {}).get("balanced", entry)
        return served
    return entry


def _evidence(root: Path, entry: dict[str, Any] | None) -> EvidenceFile | None:
    if not entry:
        return None
    return EvidenceFile(root / str(entry["file"]), str(entry["sha256"]), int(entry["answers"]), str(entry["member"]),
                        bool(entry.get("texts", False)))


def single_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """An item's single-member entry: an ensemble's first member's own (under "fast"), or the entry itself."""
    single: dict[str, Any] = entry.get("fast", entry)
    return single


def single_view(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with every item as its single-member entry (the fast mode's view)."""
    return {**manifest, "items": {item_id: single_entry(entry) for item_id, entry in manifest.get("items", {}).items()}}


def member_entry(root: Path, member: Member) -> dict[str, Any]:
    entry = {"backbone": member.backbone, "backbone_sha256": member.backbone_sha256, "format": member.head_format,
             "file": str(member.path.relative_to(root)), "sha256": member.sha256, "bytes": member.nbytes,
             "weight": member.weight}
    return entry | ({"source": member.source, "golden": member.golden} if member.source else {})


def ensemble_item_entry(root: Path, *, key: str, version: str, members: list[Member], fast: dict[str, Any],
                        thresholds: list[float] | None, review_threshold: float, golden_texts: list[str],
                        golden_probabilities: list[list[float]], model_card: dict[str, Any],
                        check: dict[str, Any]) -> dict[str, Any]:
    """An ensemble item's entry: its members (each with its golden outputs), combined by the weighted mean of
    their probabilities; `fast` is the first member's own single-member entry. The top-level member keys
    are the first member's, as in `item_entry`."""
    entries = [member_entry(root, member) for member in members]
    first = entries[0]
    return {
        "key": key, "version": version, **{name: first[name] for name in
                                           ("format", "file", "sha256", "bytes", "backbone", "backbone_sha256")},
        "members": entries, "combine": "mean_probabilities", "fast": fast,
        "labels": fast["labels"], "thresholds": thresholds, "review_threshold": review_threshold,
        "golden": {"texts": golden_texts, "probabilities": golden_probabilities}, "model_card": model_card,
        # The first member's evidence index: its head's features are the item's own learned view of an answer
        # (the lexical member has no dense features, the other trunks' heads each see less of the choice).
        "evidence": fast.get("evidence"),
        **check,
    }


def item_entry(root: Path, *, key: str, version: str, member: Member, labels: list[int],
               thresholds: list[float] | None, review_threshold: float, golden_texts: list[str],
               golden_logits: list[list[float]], model_card: dict[str, Any], check: dict[str, Any],
               evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """An item's manifest entry, as `item_spec` reads it: one member today, whose keys also stand at the top
    level (the single-member view older readers use). `check`: what the exporter verified against PyTorch
    (validation, validated_on, qwk, max_abs_logit_diff)."""
    single = member_entry(root, member)
    return {
        "key": key, "version": version, **{name: single[name] for name in
                                           ("format", "file", "sha256", "bytes", "backbone", "backbone_sha256")},
        "members": [single], "combine": "single",
        "labels": labels, "thresholds": thresholds, "review_threshold": review_threshold,
        "golden": {"texts": golden_texts, "logits": golden_logits}, "model_card": model_card,
        "evidence": evidence, **check,
    }


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no export manifest at {path}; run `python -m export` (or `make export`)")
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Atomically: a running service re-reading the folder sees the old manifest or the new, never half."""
    tmp = root / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(root / "manifest.json")


def item_versions(manifest: dict[str, Any]) -> dict[str, str]:
    """Item id -> the version the manifest names."""
    return {item_id: str(entry["version"]) for item_id, entry in manifest.get("items", {}).items()}


def load_artifacts(root: Path, tier: str = "accurate") -> Artifacts:
    """tier: what each item serves (item_spec); `fast`: every ensemble item as its first member alone."""
    manifest = read_manifest(root)
    items = {item_id: item_spec(root, item_id, entry, manifest, tier) for item_id, entry in manifest["items"].items()}
    backbones = {name: backbone_files(root, entry) for name, entry in backbone_entries(manifest).items()}
    pending = {item_id: dict(entry) for item_id, entry in manifest.get("pending", {}).items() if item_id not in items}
    return Artifacts(root, manifest, items, backbones, pending)
