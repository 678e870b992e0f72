"""The real backend: one resident trunk session per backbone, heads from an LRU cache, rows grouped by item."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
from collections import defaultdict
from typing import Any

import numpy as np
import onnxruntime as ort

from app import metrics
from app.backend import UNKNOWN_SHARE_FOR_REVIEW, AnswerRow, Outcome, PreparedRow, Scored
from app.errors import ItemUnavailable, NoScorableContent, ScoringError, UnknownItem
from app.head_cache import HeadCache
from app.length_buckets import length_buckets
from app.settings import Settings
from app.trunks import Trunk, load_trunk, load_trunks, trunk_for
from core.decoding import decode, softmax
from core.manifest import Artifacts, ItemSpec, item_spec, load_artifacts
from core.onnx_runtime import AdapterHead, HeadRunner, MergedHead, pad, release_freed_memory, run_trunk

log = logging.getLogger("scorer.engine")
GOLDEN_TOLERANCE = 1e-3


def pick_device(requested: str) -> str:
    installed = {dist for dist in ("onnxruntime", "onnxruntime-gpu") if _installed(dist)}
    if len(installed) == 2:
        raise RuntimeError("both onnxruntime and onnxruntime-gpu are installed; they overwrite each other. "
                           "Keep one (extras `cpu` or `gpu`).")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if requested == "cuda" and not has_cuda:
        raise RuntimeError("SCORER_DEVICE=cuda but this onnxruntime build has no CUDA provider")
    return "cuda" if requested == "cuda" or (requested == "auto" and has_cuda) else "cpu"


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class OnnxBackend:
    def __init__(self, settings: Settings, artifacts: Artifacts | None = None) -> None:
        self.settings = settings
        self.artifacts = artifacts or load_artifacts(settings.artifacts)
        self.threads = settings.threads or os.cpu_count() or 1
        self.device = pick_device(settings.device)
        # One trunk per backbone, loaded once; every item of that backbone shares it.
        self.trunks: dict[str, Trunk] = load_trunks(self.artifacts, settings.precision, self.threads, self.device)
        self.cache = HeadCache(self._load_head, settings.cache_bytes, set(settings.pin_items))
        self.verified: set[tuple[str, str]] = set()
        self.ready = False
        log.info("trunks %s on %s (%d threads), %d items", sorted(self.trunks), self.device, self.threads,
                 len(self.artifacts.items))

    def items(self) -> dict[str, ItemSpec]:
        return self.artifacts.items

    def pending(self) -> dict[str, dict[str, Any]]:
        return self.artifacts.pending

    def is_cached(self, spec: ItemSpec) -> bool:
        return spec.key in self.cache

    def _load_head(self, spec: ItemSpec) -> HeadRunner:
        trunk = trunk_for(spec, self.trunks)  # refuses an item whose backbone is not the trunk's
        if not spec.path.is_file():
            raise ItemUnavailable(f"item {spec.item_id!r}: head file is missing")
        try:
            head: HeadRunner
            if spec.head_format == "ort-adapter":
                if trunk.shared_head is None:
                    raise ItemUnavailable(f"item {spec.item_id!r}: no shared head graph in the artifacts")
                head = AdapterHead(trunk.shared_head, spec.path)
            else:
                head = MergedHead(spec.path, self.threads, self.device)
        except ScoringError:
            raise
        except Exception as exc:  # ORT's own errors for corrupt files
            log.error("item %s %s: head failed to load: %s", spec.item_id, spec.version, type(exc).__name__)
            raise ItemUnavailable(f"item {spec.item_id!r}: head file cannot be loaded") from exc
        if spec.key not in self.verified:
            self._check_golden(spec, head, trunk)
            self.verified.add(spec.key)
            release_freed_memory()
        return head

    def _check_golden(self, spec: ItemSpec, head: HeadRunner, trunk: Trunk) -> None:
        """The first load of a version scores its golden answers: a head silently not applied fails here."""
        if not spec.golden_texts:
            return
        ids, mask = pad([row for row, _ in trunk.encoder.encode(spec.golden_texts)])
        diff = float(np.abs(head.logits(run_trunk(trunk.session, ids, mask), mask)
                            - np.asarray(spec.golden_logits)).max())
        if diff > GOLDEN_TOLERANCE and trunk.fp32:
            raise ItemUnavailable(f"item {spec.item_id!r}: golden answers differ from export ({diff:.1e})")

    def reload(self, item_id: str) -> ItemSpec:
        """Re-read the manifest; load and verify the item's newest exported version, then swap it in.

        Requests already holding the old version finish with it; the swap is one dict assignment."""
        fresh = load_artifacts(self.artifacts.root)
        if item_id not in fresh.items:
            raise UnknownItem(f"item {item_id!r} is not in the export manifest")
        return self._swap_in(fresh, fresh.items[item_id])

    def rollback(self, item_id: str) -> ItemSpec:
        """Swap in the newest exported version other than the one served now (from the manifest's history)."""
        fresh = load_artifacts(self.artifacts.root)
        current = self.artifacts.items.get(item_id)
        older = [entry for entry in fresh.history(item_id) if current is None or entry["version"] != current.version]
        if not older:
            raise UnknownItem(f"item {item_id!r} has no earlier exported version to roll back to")
        return self._swap_in(fresh, item_spec(self.artifacts.root, item_id, older[0]))

    def activate(self, item_id: str, version: str) -> ItemSpec:
        """Serve exactly `version` (current or in the manifest's history): another replica switched to it."""
        fresh = load_artifacts(self.artifacts.root)
        current = fresh.items.get(item_id)
        if current is not None and current.version == version:
            return self._swap_in(fresh, current)
        for entry in fresh.history(item_id):
            if str(entry["version"]) == version:
                return self._swap_in(fresh, item_spec(self.artifacts.root, item_id, entry))
        raise UnknownItem(f"item {item_id!r} has no exported version {version!r}")

    def _swap_in(self, fresh: Artifacts, spec: ItemSpec) -> ItemSpec:
        loaded = self.trunks.get(spec.backbone)
        files = fresh.backbones.get(spec.backbone)
        if loaded is not None and files is not None and files.trunk_sha256 != loaded.files.trunk_sha256:
            raise ItemUnavailable(f"the {spec.backbone} trunk changed on disk; restart the service to pick it up")
        if loaded is None and files is not None:
            # The first item of a backbone exported after start-up (make serve exports the default backbone
            # first): its trunk is loaded now, once; the items already served do not wait for it.
            self.trunks[spec.backbone] = load_trunk(files, self.settings.precision, self.threads, self.device)
            log.info("trunk %s loaded for %s", spec.backbone, spec.item_id)
        self.cache.get(spec)  # loads and checks the golden answers; raises and keeps the old version if bad
        self.artifacts.items[spec.item_id] = spec
        # Still preparing: what was pending and is neither served yet nor gone from the export. Items of one
        # export are swapped in one by one, so the fresh manifest alone (no longer pending) would hide them.
        listed = set(fresh.pending) | set(fresh.items)
        known = {**self.artifacts.pending, **fresh.pending}
        self.artifacts.pending = {item_id: entry for item_id, entry in known.items()
                                  if item_id in listed and item_id not in self.artifacts.items}
        log.info("item %s now serves %s", spec.item_id, spec.version)
        return spec

    def warm_up(self) -> None:
        for trunk in self.trunks.values():
            ids, mask = pad([row for row, _ in trunk.encoder.encode(["warm up the trunk"] * 4)])
            run_trunk(trunk.session, ids, mask)
        for item_id in [*self.settings.pin_items, *self.settings.warm_items]:
            spec = self.artifacts.items.get(item_id)
            if spec is None:
                raise RuntimeError(f"pinned/warm item {item_id!r} is not in the manifest")
            self.cache.get(spec)
        release_freed_memory()  # the sessions' construction freed far more than they keep
        self.ready = True

    def _by_trunk(self, item_ids: list[str]) -> tuple[dict[str, list[int]], dict[int, ScoringError]]:
        """Row indices grouped by the trunk of their item, and the rows no trunk can take, with their error."""
        by_trunk: dict[str, list[int]] = defaultdict(list)
        refused: dict[int, ScoringError] = {}
        for index, item_id in enumerate(item_ids):
            spec = self.artifacts.items.get(item_id)
            if spec is None:
                refused[index] = UnknownItem(f"unknown item {item_id!r}")
                continue
            try:
                by_trunk[trunk_for(spec, self.trunks).name].append(index)
            except ScoringError as error:
                refused[index] = error
        return by_trunk, refused

    def prepare(self, rows: list[AnswerRow]) -> list[PreparedRow | ScoringError]:
        """Each row through its item's own tokenizer; rows no trunk can take carry their error."""
        prepared: dict[int, PreparedRow | ScoringError] = {}
        by_trunk, refused = self._by_trunk([item_id for item_id, _ in rows])
        prepared.update(refused)
        started = time.perf_counter()
        for name, indices in by_trunk.items():
            answers = self.trunks[name].encoder.encode_answers([rows[i][1] for i in indices])
            for index, encoded in zip(indices, answers, strict=True):
                prepared[index] = (PreparedRow(rows[index][0], encoded) if encoded.readable_tokens else
                                   NoScorableContent("the answer has nothing the model can read (only control, "
                                                     "zero-width, combining or space characters)"))
        metrics.STAGE_SECONDS.labels("tokenize").observe(time.perf_counter() - started)
        return [prepared.get(index, ScoringError("not prepared")) for index in range(len(rows))]

    def score_prepared(self, rows: list[PreparedRow]) -> list[Outcome]:
        # An item can have gone since its rows were prepared (reload): `_by_trunk` refuses those rows.
        by_trunk, refused = self._by_trunk([row.item_id for row in rows])
        outcomes: dict[int, Outcome] = dict(refused)
        for name, indices in by_trunk.items():  # each backbone runs its own trunk over its own rows
            order = sorted(indices, key=lambda i: len(rows[i].encoded.ids))
            lengths = [len(rows[i].encoded.ids) for i in order]
            for bucket in length_buckets(lengths, self.settings.max_batch_rows):
                outcomes.update(self._score_chunk(self.trunks[name], [(i, rows[i]) for i in order[bucket]]))
        return [outcomes.get(index, ScoringError("not scored")) for index in range(len(rows))]

    def _score_chunk(self, trunk: Trunk, chunk: list[tuple[int, PreparedRow]]) -> dict[int, Outcome]:
        """One trunk run over the chunk, then each item's head on its rows: row index -> outcome."""
        by_item: dict[str, list[int]] = defaultdict(list)
        for position, (_, row) in enumerate(chunk):
            by_item[row.item_id].append(position)
        ids, mask = pad([row.encoded.ids for _, row in chunk])
        started = time.perf_counter()
        hidden = run_trunk(trunk.session, ids, mask)
        metrics.STAGE_SECONDS.labels("trunk").observe(time.perf_counter() - started)
        metrics.BATCH_ROWS.observe(len(chunk))
        outcomes: dict[int, Outcome] = {}
        for item_id, positions in by_item.items():
            spec = self.artifacts.items[item_id]
            started = time.perf_counter()
            try:
                head = self.cache.get(spec)
                width = int(mask[positions].sum(axis=1).max())  # trim padding this group does not need
                logits = head.logits(np.ascontiguousarray(hidden[positions, :width]),
                                     np.ascontiguousarray(mask[positions, :width]))
            except ScoringError as error:
                outcomes.update((chunk[position][0], error) for position in positions)
                continue
            metrics.STAGE_SECONDS.labels("head").observe(time.perf_counter() - started)
            scored = self._decode(spec, logits, [chunk[position][1] for position in positions])
            outcomes.update(zip([chunk[position][0] for position in positions], scored, strict=True))
            metrics.ANSWERS_SCORED.labels(item_id).inc(len(positions))
        return outcomes

    def _decode(self, spec: ItemSpec, logits: np.ndarray, rows: list[PreparedRow]) -> list[Scored]:
        probabilities = softmax(logits)
        classes = decode(probabilities, spec.thresholds)
        review_below = (self.settings.review_threshold if self.settings.review_threshold is not None
                        else spec.review_threshold)
        scored: list[Scored] = []
        for position, row in enumerate(rows):
            confidence = float(probabilities[position, classes[position]])
            reasons = (["low_confidence"] if confidence < review_below else []) + \
                      (["unknown_words"] if row.encoded.unknown_share >= UNKNOWN_SHARE_FOR_REVIEW else [])
            scored.append(Scored(
                item_id=spec.item_id,
                score=spec.labels[int(classes[position])],
                probabilities=[round(float(p), 6) for p in probabilities[position]],
                confidence=round(confidence, 6),
                needs_review=bool(reasons),
                adapter_version=spec.version,
                truncated=row.encoded.truncated,
                review_reasons=reasons,
            ))
        return scored
