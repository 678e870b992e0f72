"""The real backend: one resident trunk session per backbone, heads from an LRU cache, rows grouped by item."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app import metrics
from app.backend import AnswerRow, Outcome, PreparedRow
from app.errors import ItemUnavailable, NoScorableContent, ScoringError, UnknownItem
from app.evidence_indexes import EvidenceIndexes
from app.head_cache import HeadCache, MemberRunner
from app.member_runs import MemberRuns, ModelRun
from app.settings import Settings
from app.trunks import Trunk, load_trunk, load_trunks, member_trunk, require_trunks
from core.answer_tokens import EncodedAnswer
from core.grouped_head import GroupedMember
from core.lexical_runtime import LexicalHead
from core.manifest import Artifacts, ItemSpec, Member, item_spec, load_artifacts
from core.onnx_runtime import AdapterHead, MergedHead, pad, release_freed_memory, run_trunk

log = logging.getLogger("scorer.engine")
GOLDEN_TOLERANCE = 1e-3
# A micro-batch is cut into trunk runs of similar length only once a run holds this many tokens. On the CPU
# padding costs compute in proportion; on the GPU a session run costs about 1.5 ms (inferred: single answers
# took 3.4 ms for one trunk and one head run, bench/results/gpu.json) while the whole padded trunk takes a few
# ms, so a batch of up to 256 answers of <= 128 tokens stays one run there (with cheaper row preparation:
# 2,722 -> 2,972 answers/s at batch 256 between two H200 runs).
CPU_MIN_BUCKET_TOKENS = 1024
GPU_MIN_BUCKET_TOKENS = 256 * 128


def pick_device(requested: str) -> str:
    imported = Path(ort.__file__).resolve().parent
    owners = [dist for dist in ("onnxruntime", "onnxruntime-gpu") if package_dir(dist) == imported]
    if len(owners) == 2:
        raise RuntimeError("both onnxruntime and onnxruntime-gpu are installed in one place; they overwrite each "
                           "other. Keep one (extras `cpu` or `gpu`).")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if requested == "cuda" and not has_cuda:
        raise RuntimeError("SCORER_DEVICE=cuda but this onnxruntime build has no CUDA provider")
    return "cuda" if requested == "cuda" or (requested == "auto" and has_cuda) else "cpu"


def package_dir(distribution: str) -> Path | None:
    """Where the distribution put its `onnxruntime` package: the two overwrite each other only there. One
    shadowed by an earlier path entry (e.g. onnxruntime-gpu on PYTHONPATH over an image's onnxruntime) is
    harmless: the imported one is whole."""
    try:
        located = importlib.metadata.distribution(distribution).locate_file("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(str(located)).resolve()


class OnnxBackend:
    def __init__(self, settings: Settings, artifacts: Artifacts | None = None) -> None:
        self.settings = settings
        self.tier = settings.serving_tier  # what each item serves (core.manifest.TIERS)
        self.artifacts = artifacts or load_artifacts(settings.artifacts, self.tier)
        self.threads = settings.threads or os.cpu_count() or 1
        self.device = pick_device(settings.device)
        if self.device == "cuda" and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu with the nvidia-* wheels finds CUDA and cuDNN only after this; without it the
            # sessions fall back to the CPU (and load_trunk refuses). CUDA base images need no preload.
            ort.preload_dlls()
        # One trunk per backbone, loaded once; every item of that backbone shares it.
        self.trunks: dict[str, Trunk] = load_trunks(self.artifacts, settings, self.threads, self.device)
        self.cache = HeadCache(self._load_member, settings.cache_bytes, set(settings.pin_items))
        self.evidence = EvidenceIndexes()
        self.runs = MemberRuns(self.trunks, self.cache, settings.max_batch_rows, self._review_threshold,
                               GPU_MIN_BUCKET_TOKENS if self.device == "cuda" else CPU_MIN_BUCKET_TOKENS,
                               self.evidence.get)
        self.verified: set[tuple[tuple[str, str], int]] = set()  # (item version, member index) checked
        self.ready = False
        log.info("trunks %s on %s (%d threads), %d items", sorted(self.trunks), self.device, self.threads,
                 len(self.artifacts.items))

    def items(self) -> dict[str, ItemSpec]:
        return self.artifacts.items

    def pending(self) -> dict[str, dict[str, Any]]:
        return self.artifacts.pending

    def is_cached(self, spec: ItemSpec) -> bool:
        return self.cache.has_item(spec)

    def _load_member(self, spec: ItemSpec, index: int) -> MemberRunner:
        member = spec.serving_members[index]
        if not member.path.is_file():
            raise ItemUnavailable(f"item {spec.item_id!r}: member file {member.path.name} is missing")
        trunk = member_trunk(spec.item_id, member, self.trunks) if member.on_trunk else None
        try:
            runner: MemberRunner
            if trunk is None:
                runner = LexicalHead(member.path)
            elif member.head_format == "ort-adapter" and trunk.grouped is not None:
                runner = GroupedMember(trunk.grouped, member.path)
            elif member.head_format == "ort-adapter":
                if trunk.shared_head is None:
                    raise ItemUnavailable(f"item {spec.item_id!r}: no shared head graph in the artifacts")
                runner = AdapterHead(trunk.shared_head, member.path)
            else:
                runner = MergedHead(member.path, self.threads, self.device)
        except ScoringError:
            raise
        except Exception as exc:  # ORT's own errors for corrupt files
            log.error("item %s %s member %d failed to load: %s", spec.item_id, spec.version, index,
                      type(exc).__name__)
            raise ItemUnavailable(f"item {spec.item_id!r}: member file {member.path.name} cannot be loaded") from exc
        if (spec.key, index) not in self.verified:
            self._check_golden(spec, member, runner, trunk)
            self.verified.add((spec.key, index))
            release_freed_memory()
        return runner

    def _check_golden(self, spec: ItemSpec, member: Member, runner: MemberRunner, trunk: Trunk | None) -> None:
        """The first load of a member scores the item's golden answers: a head silently not applied (or a
        different lexical graph) fails here, and the item stays unavailable rather than scored by fewer."""
        if not spec.golden_texts or not member.golden:
            return
        outputs: np.ndarray
        if isinstance(runner, LexicalHead):
            outputs = runner.probabilities(spec.golden_texts)
        else:
            assert trunk is not None
            if not trunk.fp32:
                return  # a reduced trunk's logits differ by design; its QWK was measured at export
            ids, mask = pad([row for row, _ in trunk.encoder.encode(spec.golden_texts)])
            outputs = runner.logits(run_trunk(trunk.session, ids, mask), mask)
        diff = float(np.abs(outputs - np.asarray(member.golden)).max())
        if diff > GOLDEN_TOLERANCE:
            raise ItemUnavailable(f"item {spec.item_id!r}: golden answers differ from export ({diff:.1e})")

    def reload(self, item_id: str) -> ItemSpec:
        """Re-read the manifest; load and verify the item's newest exported version, then swap it in.

        Requests already holding the old version finish with it; the swap is one dict assignment."""
        fresh = load_artifacts(self.artifacts.root, self.tier)
        if item_id not in fresh.items:
            raise UnknownItem(f"item {item_id!r} is not in the export manifest")
        return self._swap_in(fresh, fresh.items[item_id])

    def rollback(self, item_id: str) -> ItemSpec:
        """Swap in the previous served configuration: the newest earlier exported version of the same kind
        (an ensemble goes back to an earlier ensemble, not to the single head a staged `make serve` served
        for a few seconds before it); only where there is none, the newest earlier version of any kind
        (the response's `members` and `combine` say what serves now)."""
        fresh = load_artifacts(self.artifacts.root, self.tier)
        current = self.artifacts.items.get(item_id)
        older = [entry for entry in fresh.history(item_id) if current is None or entry["version"] != current.version]
        if not older:
            raise UnknownItem(f"item {item_id!r} has no earlier exported version to roll back to")
        kind = "single" if current is None else current.combine
        same_kind = older if self.tier == "fast" else [entry for entry in older
                                                       if str(entry.get("combine", "single")) == kind]
        return self._swap_in(fresh, item_spec(self.artifacts.root, item_id, (same_kind or older)[0], tier=self.tier))

    def activate(self, item_id: str, version: str) -> ItemSpec:
        """Serve exactly `version` (current or in the manifest's history): another replica switched to it."""
        fresh = load_artifacts(self.artifacts.root, self.tier)
        current = fresh.items.get(item_id)
        if current is not None and current.version == version:
            return self._swap_in(fresh, current)
        for entry in fresh.history(item_id):
            if str(entry["version"]) == version:
                return self._swap_in(fresh, item_spec(self.artifacts.root, item_id, entry, tier=self.tier))
        raise UnknownItem(f"item {item_id!r} has no exported version {version!r}")

    def _swap_in(self, fresh: Artifacts, spec: ItemSpec) -> ItemSpec:
        for backbone in spec.backbones:
            loaded = self.trunks.get(backbone)
            files = fresh.backbones.get(backbone)
            if loaded is not None and files is not None and files.trunk_sha256 != loaded.files.trunk_sha256:
                raise ItemUnavailable(f"the {backbone} trunk changed on disk; restart the service to pick it up")
            if loaded is None and files is not None:
                # The first item of a backbone exported after start-up (make serve exports the default backbone
                # first): its trunk is loaded now, once; the items already served do not wait for it.
                self.trunks[backbone] = load_trunk(files, self.settings, self.threads, self.device)
                log.info("trunk %s loaded for %s", backbone, spec.item_id)
        self._load_all(spec)  # loads and checks the golden answers; raises and keeps the old version if bad
        self.artifacts.items[spec.item_id] = spec
        # Still preparing: what was pending and is neither served yet nor gone from the export. Items of one
        # export are swapped in one by one, so the fresh manifest alone (no longer pending) would hide them.
        listed = set(fresh.pending) | set(fresh.items)
        known = {**self.artifacts.pending, **fresh.pending}
        self.artifacts.pending = {item_id: entry for item_id, entry in known.items()
                                  if item_id in listed and item_id not in self.artifacts.items}
        log.info("item %s now serves %s", spec.item_id, spec.version)
        return spec

    def _load_all(self, spec: ItemSpec) -> None:
        for index in range(len(spec.serving_members)):
            self.cache.get(spec, index)

    def warm_up(self) -> None:
        for trunk in self.trunks.values():
            ids, mask = pad([row for row, _ in trunk.encoder.encode(["warm up the trunk"] * 4)])
            run_trunk(trunk.session, ids, mask)
        for item_id in [*self.settings.pin_items, *self.settings.warm_items]:
            spec = self.artifacts.items.get(item_id)
            if spec is None:
                raise RuntimeError(f"pinned/warm item {item_id!r} is not in the manifest")
            self._load_all(spec)
        release_freed_memory()  # the sessions' construction freed far more than they keep
        self.ready = True

    def prepare(self, rows: list[AnswerRow]) -> list[PreparedRow | ScoringError]:
        """Each row through the tokenizer of every trunk its item's members run on; rows that cannot be
        scored (unknown item, a member's trunk missing, nothing readable) carry their error."""
        prepared: dict[int, PreparedRow | ScoringError] = {}
        wanted: dict[str, list[int]] = defaultdict(list)  # backbone -> rows that need its tokens
        specs: dict[int, ItemSpec] = {}
        refused: dict[tuple[str, str], ScoringError | None] = {}  # one trunk check per item version in the call
        for index, (item_id, _) in enumerate(rows):
            spec = self.artifacts.items.get(item_id)
            if spec is None:
                prepared[index] = UnknownItem(f"unknown item {item_id!r}")
                continue
            if spec.key not in refused:
                try:
                    require_trunks(spec, self.trunks)
                    refused[spec.key] = None
                except ScoringError as exc:
                    refused[spec.key] = exc
            if (refusal := refused[spec.key]) is not None:
                prepared[index] = refusal
                continue
            specs[index] = spec
            for backbone in spec.backbones:
                wanted[backbone].append(index)
        started = time.perf_counter()
        tokens: dict[int, dict[str, EncodedAnswer]] = defaultdict(dict)
        for backbone, indices in wanted.items():
            answers = self.trunks[backbone].encoder.encode_answers([rows[i][1] for i in indices])
            for index, encoded in zip(indices, answers, strict=True):
                tokens[index][backbone] = encoded
        for index, spec in specs.items():
            first, *others = spec.backbones
            encoded = tokens[index][first]
            reads_text = not all(member.on_trunk for member in spec.serving_members)
            prepared[index] = (PreparedRow(spec.item_id, encoded, {name: tokens[index][name] for name in others},
                                           rows[index][1] if reads_text else None, spec)
                               if encoded.readable_tokens else
                               NoScorableContent("the answer has nothing the model can read (only control, "
                                                 "zero-width, combining or space characters)"))
        metrics.stage("tokenize").observe(time.perf_counter() - started)
        return [prepared.get(index, ScoringError("not prepared")) for index in range(len(rows))]

    def score_prepared(self, rows: list[PreparedRow]) -> list[Outcome]:
        return self.runs.score(rows, self.artifacts.items)

    def run_models(self, rows: list[PreparedRow]) -> ModelRun:
        return self.runs.run_models(rows, self.artifacts.items)

    def finish(self, run: ModelRun) -> list[Outcome]:
        return self.runs.finish(run)

    def _review_threshold(self, spec: ItemSpec) -> float:
        return self.settings.review_threshold if self.settings.review_threshold is not None else spec.review_threshold
