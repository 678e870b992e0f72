"""Refused add-item runs kept as candidates: which adapter versions and which served choice they made, so that
`add-item --accept vN` serves exactly what was judged, extra members and ensemble included, without retraining.

adapters/<key>/<vN>/candidate.json holds {"members": {adapter key: version}, "ensemble": <ensemble.json> | null}
and, where the choice has a lexical member, candidate-lexical.onnx beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.artifacts import accept_version, current_record, read_manifest
from training.backbones import BACKBONES, adapter_key
from training.ensemble_build import LEXICAL_BYTES

CANDIDATE_FILE = "candidate.json"
CANDIDATE_LEXICAL = "candidate-lexical.onnx"


def keep_candidate(adapters: Path, key: str, members: dict[str, str], ensemble: dict[str, Any] | None) -> None:
    folder = adapters / key / members[key]
    stored = None
    if ensemble is not None:
        stored = {name: value for name, value in ensemble.items() if name != LEXICAL_BYTES}
        if ensemble.get(LEXICAL_BYTES):
            (folder / CANDIDATE_LEXICAL).write_bytes(ensemble[LEXICAL_BYTES])
    (folder / CANDIDATE_FILE).write_text(json.dumps({"members": members, "ensemble": stored}, indent=2) + "\n")


def accept_candidate(adapters: Path, key: str, version: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Serve a kept version (and the members and choice its run made): (its adapter config, its ensemble)."""
    versions = read_manifest(adapters)["items"].get(key, {}).get("versions", [])
    if version not in versions:
        raise FileNotFoundError(f"{key} has no version {version!r} in {adapters} (versions: "
                                f"{', '.join(versions) or 'none'}){_elsewhere(adapters, key, version)}")
    folder = adapters / key / version
    candidate = json.loads((folder / CANDIDATE_FILE).read_text()) if (folder / CANDIDATE_FILE).is_file() else None
    if candidate is None:
        return accept_version(adapters, key, version).config, None
    for name, member_version in candidate["members"].items():
        accept_version(adapters, name, member_version)
    ensemble = candidate["ensemble"]
    if ensemble is not None and (folder / CANDIDATE_LEXICAL).is_file():
        ensemble[LEXICAL_BYTES] = (folder / CANDIDATE_LEXICAL).read_bytes()
    return current_record_of(adapters, key), ensemble


def _elsewhere(adapters: Path, key: str, version: str) -> str:
    """A hint where the version exists under another backbone's key of the same item."""
    source = key.removesuffix(next((spec.item_suffix for spec in BACKBONES.values()
                                    if spec.item_suffix and key.endswith(spec.item_suffix)), ""))
    items = read_manifest(adapters)["items"]
    others = [f"{adapter_key(source, name)} (--backbone {name})" for name in BACKBONES
              if adapter_key(source, name) != key
              and version in items.get(adapter_key(source, name), {}).get("versions", [])]
    return f"; {version} exists for {', '.join(others)}" if others else ""


def backbone_of_version(adapters: Path, item_id: str, version: str) -> list[str]:
    """The backbones whose adapter of this item has that version (what --accept without --backbone means)."""
    items = read_manifest(adapters)["items"]
    return [name for name in BACKBONES
            if version in items.get(adapter_key(item_id, name), {}).get("versions", [])]


def current_record_of(adapters: Path, key: str) -> dict[str, Any]:
    record = current_record(adapters, key)
    if record is None:
        raise FileNotFoundError(f"{key} has no served version in {adapters}")
    return record.config


def adapter_test_qwk(adapters: Path, key: str) -> float:
    record = current_record(adapters, key)
    return float(record.metrics["test"]["qwk"]) if record is not None else float("nan")
