"""Scoring prepared rows: each trunk the micro-batch needs runs once over the rows that need it, every member
head on that trunk takes its rows of the output, lexical members read the texts, and each item's members'
probabilities are combined and decoded. A row whose member fails gets that member's error: an ensemble item
is never scored by fewer members than it names."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from app import metrics
from app.backend import UNKNOWN_SHARE_FOR_REVIEW, Outcome, PreparedRow, Scored
from app.batched_run import BatchedGroup, Features, keep_features, run_batched
from app.errors import ItemUnavailable, ScoringError, UnknownItem
from app.head_cache import HeadCache
from app.length_buckets import length_buckets
from app.member_outputs import MemberOutputs, Probabilities
from app.trunks import Trunk, require_trunks
from core.decoding import decode
from core.ensemble import combine
from core.evidence import Evidence, EvidenceIndex
from core.grouped_head import GroupedMember
from core.lexical_runtime import LexicalHead
from core.manifest import LEXICAL_FORMAT, ItemSpec
from core.onnx_runtime import FloatArray, pad_answers
from core.trunk_states import run_trunk_states

log = logging.getLogger("scorer.engine")
MemberKey = tuple[tuple[str, str], int]  # (the item version's key, member index)


def evidence_member(spec: ItemSpec) -> int | None:
    """The index of the member whose features the item's evidence index holds (its first adapter)."""
    if spec.evidence is None:
        return None
    sources = [member.source for member in spec.serving_members]
    return sources.index(spec.evidence.member) if spec.evidence.member in sources else None


def plan_row(spec: ItemSpec, row: PreparedRow, trunks: dict[str, Trunk],
             planned: dict[tuple[str, str], frozenset[str]] | None = None) -> None:
    """Raises the row's error when some member cannot run (trunk missing, or tokens prepared for an older
    version of the item that had other members). `planned`: the item versions already checked in this call,
    with the inputs their members need (one check per item version, not per row)."""
    needed = planned.get(spec.key) if planned is not None else None
    if needed is None:
        require_trunks(spec, trunks)
        needed = frozenset(member.backbone if member.on_trunk else LEXICAL_FORMAT for member in spec.serving_members)
        if planned is not None:
            planned[spec.key] = needed
    if not row.others and row.text is None:  # one trunk's tokens only (the common case, without a set per row)
        ready = len(needed) == 1 and spec.first_backbone in needed
    else:
        ready = needed <= {*row.others, spec.first_backbone, *((LEXICAL_FORMAT,) if row.text is not None else ())}
    if not ready:
        raise ItemUnavailable(f"item {spec.item_id!r} changed while the answer waited; send it again")


@dataclass
class ModelRun:
    """A micro-batch after its model runs: each member's probabilities, the rows' errors so far, explain features."""

    rows: list[PreparedRow]
    specs: dict[int, ItemSpec]
    outputs: MemberOutputs
    outcomes: dict[int, Outcome]
    features: Features


class MemberRuns:
    def __init__(self, trunks: dict[str, Trunk], cache: HeadCache, max_batch_rows: int,
                 review_threshold: Callable[[ItemSpec], float], min_bucket_tokens: int = 1024,
                 evidence_of: Callable[[ItemSpec], EvidenceIndex | None] = lambda _: None) -> None:
        self.trunks = trunks
        self.evidence_of = evidence_of
        self.cache = cache
        self.max_batch_rows = max_batch_rows
        self.min_bucket_tokens = min_bucket_tokens
        self.review_threshold = review_threshold
        # One thread for lexical members (CPU string ops): overlaps them with the trunk and head runs.
        self.lexical_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lexical")

    def score(self, rows: list[PreparedRow], items: dict[str, ItemSpec]) -> list[Outcome]:
        return self.finish(self.run_models(rows, items))

    def run_models(self, rows: list[PreparedRow], items: dict[str, ItemSpec]) -> ModelRun:
        """Every trunk, head and lexical run the rows need; `finish` combines and decodes (the batcher runs it
        on another thread, beside the next micro-batch's model runs)."""
        items = dict(items)  # one snapshot: a reload swapping an item mid-call cannot split its rows
        outcomes: dict[int, Outcome] = {}
        specs: dict[int, ItemSpec] = {}  # the version each row is scored with, fixed here (reloads swap items)
        on_trunk: dict[str, list[tuple[int, int]]] = defaultdict(list)  # backbone -> (row, member index)
        on_text: list[tuple[int, int]] = []
        planned: dict[tuple[str, str], frozenset[str]] = {}
        for index, row in enumerate(rows):
            spec = row.spec or items.get(row.item_id)  # the version it was prepared for finishes it
            if spec is None:  # gone since its rows were prepared (reload)
                outcomes[index] = UnknownItem(f"unknown item {row.item_id!r}")
                continue
            try:
                plan_row(spec, row, self.trunks, planned)
            except ScoringError as error:
                outcomes[index] = error
                continue
            specs[index] = spec
            for member_index, member in enumerate(spec.serving_members):
                (on_trunk[member.backbone] if member.on_trunk else on_text).append((index, member_index))
        outputs = MemberOutputs()
        features: Features = {}
        # Lexical members run on their own thread while the trunks run (both release the GIL in ONNX Runtime):
        # on a GPU host they would otherwise hold the whole batch on one CPU core after the device is done.
        # They write into their own outputs, merged after both finish.
        lexical_outputs = MemberOutputs()
        lexical_errors: dict[int, Outcome] = {}
        pending = self.lexical_worker.submit(self._run_lexical, rows, specs, on_text, lexical_outputs,
                                             dict(outcomes), lexical_errors) if on_text else None
        try:
            for name, pairs in on_trunk.items():
                self._run_trunk(self.trunks[name], rows, specs, pairs, outputs, outcomes, features)
        finally:
            if pending is not None:
                pending.result()
        outputs.update(lexical_outputs)
        for index, lexical_error in lexical_errors.items():
            outcomes.setdefault(index, lexical_error)
        return ModelRun(rows, specs, outputs, outcomes, features)

    def finish(self, run: ModelRun) -> list[Outcome]:
        self._combine(run.rows, run.specs, run.outputs, run.outcomes, run.features)
        return [run.outcomes.get(index, ScoringError("not scored")) for index in range(len(run.rows))]

    def _run_trunk(self, trunk: Trunk, rows: list[PreparedRow], specs: dict[int, ItemSpec],
                   pairs: list[tuple[int, int]], outputs: MemberOutputs,
                   outcomes: dict[int, Outcome], features: Features) -> None:
        members_of: dict[int, list[int]] = defaultdict(list)
        for index, member_index in pairs:
            members_of[index].append(member_index)
        tokens = {index: rows[index].tokens(trunk.name, specs[index].first_backbone) for index in members_of}
        order = sorted(members_of, key=lambda index: tokens[index].length)
        lengths = [tokens[index].length for index in order]
        for bucket in length_buckets(lengths, self.max_batch_rows, self.min_bucket_tokens):
            chunk = order[bucket]
            ids, mask = pad_answers([tokens[index] for index in chunk])
            started = time.perf_counter()
            states = run_trunk_states(trunk.session, ids, mask, trunk.keep_states_on)
            metrics.stage("trunk").observe(time.perf_counter() - started)
            metrics.BATCH_ROWS.observe(len(chunk))
            groups: dict[MemberKey, list[int]] = defaultdict(list)  # positions in the chunk
            for position, index in enumerate(chunk):
                for member_index in members_of[index]:
                    groups[(specs[index].key, member_index)].append(position)
            batched: list[BatchedGroup] = []
            for (_, member_index), group in groups.items():
                positions = [position for position in group if chunk[position] not in outcomes]
                if not positions:
                    continue  # an earlier member of these rows failed: they carry its error
                indices = [chunk[position] for position in positions]
                spec = specs[indices[0]]
                explained = [index for index in indices if rows[index].explain]
                if explained and member_index != evidence_member(spec):
                    explained = []
                started = time.perf_counter()
                try:
                    head = self.cache.get(spec, member_index)
                    assert not isinstance(head, LexicalHead)
                    if isinstance(head, GroupedMember):  # run below, with every other item's rows at once
                        batched.append(BatchedGroup(spec.key, member_index, positions, indices, head, explained))
                        continue
                    width = int(mask[positions].sum(axis=1).max())  # trim padding this group does not need
                    logits, pooled = head.run(np.ascontiguousarray(states.host[positions, :width]),
                                              np.ascontiguousarray(mask[positions, :width]), pooled=bool(explained))
                except ScoringError as error:
                    outcomes.update((index, error) for index in indices)
                    continue
                metrics.stage("head").observe(time.perf_counter() - started)
                outputs.keep_logits((spec.key, member_index), indices, logits)
                keep_features(features, indices, explained, pooled)
            if batched:
                assert trunk.grouped is not None  # its members are made only where the trunk has the graph
                run_batched(trunk.grouped, states, mask, batched, outputs, features)

    def _run_lexical(self, rows: list[PreparedRow], specs: dict[int, ItemSpec], pairs: list[tuple[int, int]],
                     outputs: MemberOutputs, failed: dict[int, Outcome],
                     outcomes: dict[int, Outcome]) -> None:
        """`failed`: rows that had failed before any member ran (skipped); errors go into `outcomes`."""
        groups: dict[MemberKey, list[int]] = defaultdict(list)
        for index, member_index in pairs:
            if index not in failed:
                groups[(specs[index].key, member_index)].append(index)
        for (item_key, member_index), indices in groups.items():
            started = time.perf_counter()
            try:
                head = self.cache.get(specs[indices[0]], member_index)
                assert isinstance(head, LexicalHead)
                probabilities = head.probabilities([rows[index].text or "" for index in indices])
            except ScoringError as error:
                outcomes.update((index, error) for index in indices)
                continue
            metrics.stage("lexical").observe(time.perf_counter() - started)
            outputs.keep((item_key, member_index), indices, probabilities)

    def _combine(self, rows: list[PreparedRow], specs: dict[int, ItemSpec], outputs: MemberOutputs,
                 outcomes: dict[int, Outcome], features: Features) -> None:
        by_item: dict[tuple[str, str], list[int]] = defaultdict(list)  # ascending call indices per item version
        for index, spec in specs.items():
            if index not in outcomes:
                by_item[spec.key].append(index)
        for item_key, indices in by_item.items():
            spec = specs[indices[0]]
            members = spec.serving_members
            stacked, complete = outputs.aligned(item_key, len(members), np.asarray(indices, dtype=np.int64))
            if not complete.all():  # never scored by fewer members than it names
                missing = ItemUnavailable(f"item {spec.item_id!r}: a member did not score the answer")
                done = complete.tolist()
                outcomes.update((index, missing) for index, ok in zip(indices, done, strict=True) if not ok)
                indices = [index for index, ok in zip(indices, done, strict=True) if ok]
                stacked = [matrix[complete] for matrix in stacked]
                if not indices:
                    continue
            probabilities = combine(stacked, [member.weight for member in members])
            outcomes.update(zip(indices, self._decode(spec, probabilities, [rows[index] for index in indices],
                                                      [features.get(index) for index in indices]), strict=True))
            metrics.ANSWERS_SCORED.labels(spec.item_id).inc(len(indices))

    def _decode(self, spec: ItemSpec, probabilities: Probabilities, rows: list[PreparedRow],
                pooled: list[FloatArray | None]) -> list[Scored]:
        classes = decode(probabilities, spec.thresholds)
        confidences = probabilities[np.arange(len(rows)), classes]
        low_confidence = (confidences < self.review_threshold(spec)).tolist()
        class_of = classes.tolist()
        evidence = self._evidence(spec, class_of, pooled)
        # Python values once per item, rounded in numpy (Python's round per value was 1.4 us per row; numpy's
        # scales by 1e6 in binary, so a value within an ulp of a half could end one millionth apart).
        listed = np.round(probabilities, 6).tolist()
        labels = np.asarray(spec.labels)[classes].tolist()
        members, version, item_id = spec.member_names, spec.version, spec.item_id
        scored: list[Scored] = []
        for position, row in enumerate(rows):
            found = evidence.get(position)
            reasons = (["low_confidence"] if low_confidence[position] else []) + \
                      (["unknown_words"] if row.unknown_share >= UNKNOWN_SHARE_FOR_REVIEW else []) + \
                      (["neighbours_disagree"] if found is not None and found.disagrees else [])
            scored.append(Scored(
                item_id=item_id,
                score=labels[position],
                probabilities=listed[position],
                confidence=listed[position][class_of[position]],
                needs_review=bool(reasons),
                adapter_version=version,
                truncated=row.truncated,
                review_reasons=reasons,
                members=members,
                evidence=found.body if found is not None else None,
            ))
        return scored

    def _evidence(self, spec: ItemSpec, classes: list[int], pooled: list[FloatArray | None]) -> dict[int, Evidence]:
        """Row position -> its evidence, for the explain rows of an item with an index."""
        wanted = [position for position, features in enumerate(pooled) if features is not None]
        vectors = [features for features in pooled if features is not None]
        index = self.evidence_of(spec) if wanted else None
        if index is None:
            return {}
        started = time.perf_counter()
        try:
            found = index.explain(np.stack(vectors), [classes[p] for p in wanted], spec.labels)
        except ValueError as exc:  # an index of another width than the head's features: scored, not explained
            log.error("item %s %s: evidence not searched: %s", spec.item_id, spec.version, exc)
            return {}
        metrics.stage("evidence").observe(time.perf_counter() - started)
        return dict(zip(wanted, found, strict=True))
