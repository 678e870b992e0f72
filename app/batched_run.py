"""The batched head graph's side of scoring a trunk chunk: every item member's rows of the chunk in one
session run (per round: a row appears once per run), probabilities and explain features kept per row."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from app import metrics
from app.member_outputs import MemberOutputs
from core.grouped_head import GroupedHeads, GroupedMember
from core.onnx_runtime import FloatArray
from core.trunk_states import TrunkStates

Features = dict[int, FloatArray]  # row index -> the evidence member's pooled features (explain rows only)


@dataclass(frozen=True)
class BatchedGroup:
    """One item member's rows of a trunk chunk, for the batched head run."""

    item_key: tuple[str, str]  # the item version's key
    member_index: int
    positions: list[int]  # in the chunk
    indices: list[int]  # in the call's rows
    head: GroupedMember
    explained: list[int]  # the rows among `indices` whose pooled features are kept (explain)


def keep_features(features: Features, indices: list[int], explained: list[int], pooled: FloatArray | None) -> None:
    if pooled is None or not explained:
        return
    wanted = set(explained)
    features.update((index, pooled[position]) for position, index in enumerate(indices) if index in wanted)


def run_batched(heads: GroupedHeads, states: TrunkStates, mask: np.ndarray, groups: list[BatchedGroup],
                outputs: MemberOutputs, features: Features) -> None:
    """Every group in one run of the trunk's batched head graph per round (`_rounds`)."""
    for round_groups in _rounds(groups):
        started = time.perf_counter()
        positions = [position for group in round_groups for position in group.positions]
        run_hidden: np.ndarray | ort.OrtValue
        if len(positions) == states.rows:
            # Every row of the chunk, each once: the trunk's output goes in as it is (where it is, under IO
            # binding), each row told its slot. Gathering rows into group order copied the whole hidden state
            # (25 us per row on the host).
            run_hidden = states.bound if states.bound is not None else states.host
            run_mask = mask
            slots = np.empty(len(positions), dtype=np.int64)
            slots[positions] = np.repeat(np.arange(len(round_groups)), [len(group.positions) for group in round_groups])
            read = [np.asarray(group.positions) for group in round_groups]
        else:
            width = int(mask[positions].sum(axis=1).max())  # trim the padding these rows do not need
            run_hidden = np.ascontiguousarray(states.host[positions, :width])
            run_mask = np.ascontiguousarray(mask[positions, :width])
            slots = np.concatenate([np.full(len(group.positions), slot, dtype=np.int64)
                                    for slot, group in enumerate(round_groups)])
            ends = np.cumsum([len(group.positions) for group in round_groups])
            read = [np.arange(end - len(group.positions), end) for group, end in zip(round_groups, ends, strict=True)]
        logits, pooled = heads.run(run_hidden, run_mask, slots, [group.head for group in round_groups],
                                   pooled=any(group.explained for group in round_groups))
        metrics.stage("head").observe(time.perf_counter() - started)
        for group, rows in zip(round_groups, read, strict=True):
            outputs.keep_logits((group.item_key, group.member_index), group.indices, logits[rows, : group.head.labels])
            keep_features(features, group.indices, group.explained, None if pooled is None else pooled[rows])


def _rounds(groups: list[BatchedGroup]) -> list[list[BatchedGroup]]:
    """Groups into runs in which each row of the chunk appears at most once (a row with two members on this
    trunk, as the accurate tier's MiniLM + MiniLM both-raters, runs in two): such a run can take the trunk's
    output without copying rows out of it."""
    rounds: list[tuple[set[int], list[BatchedGroup]]] = []
    for group in groups:
        for taken, members in rounds:
            if taken.isdisjoint(group.positions):
                taken.update(group.positions)
                members.append(group)
                break
        else:
            rounds.append((set(group.positions), [group]))
    return [members for _, members in rounds]
