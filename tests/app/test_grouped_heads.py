"""The batched head graph (one session run for every item of a micro-batch) scores exactly as the per-item
head runs do: logits against the per-item graph, the engine's answers with it on and off, a failing item's
rows alone refused."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import core.grouped_head
from app.backend import AnswerRow, Scored, score_now
from app.errors import ItemUnavailable
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from core.grouped_head import GroupedHeads, GroupedMember
from core.manifest import load_artifacts
from core.onnx_runtime import AdapterHead, TextEncoder, load_session, pad, run_trunk
from core.trunk_states import run_trunk_states

ANSWERS = ["acid rain reacts with limestone", "i do not know", "the mass of the samples went down because of acid",
           "vinegar", "marble dissolves in acid rain over many years and the statue loses detail"]


def engine(artifacts: Path, grouped: str) -> OnnxBackend:
    return OnnxBackend(Settings(artifacts=artifacts, grouped_heads=grouped, threads=1))


def test_the_batched_graph_gives_each_row_its_own_items_logits(tiny_artifacts: Path) -> None:
    artifacts = load_artifacts(tiny_artifacts)
    files = next(iter(artifacts.backbones.values()))
    assert files.grouped_head_path is not None and files.adapter_head_path is not None
    encoder = TextEncoder(files.tokenizer_path, files.max_length, files.text_prefix)
    ids, mask = pad([row for row, _ in encoder.encode(ANSWERS * 2)])
    hidden = run_trunk(load_session(files.trunk_path, 1, arena=True), ids, mask)
    specs = list(artifacts.items.values())
    heads = GroupedHeads(files.grouped_head_path, 1)
    members = [GroupedMember(heads, spec.serving_members[0].path) for spec in specs]
    slots = np.arange(len(ANSWERS) * 2) % len(specs)  # rows of the items interleaved
    batched = heads.logits(hidden, mask, slots, members)
    shared = load_session(files.adapter_head_path, 1, arena=False)
    for slot, spec in enumerate(specs):
        rows = np.flatnonzero(slots == slot)
        alone = AdapterHead(shared, spec.serving_members[0].path).logits(hidden[rows], mask[rows])
        assert np.abs(batched[rows, : alone.shape[1]] - alone).max() < 1e-4
        assert np.abs(members[slot].logits(hidden[rows], mask[rows]) - alone).max() < 1e-4


def test_resident_slots_give_what_stacking_per_run_gives(tiny_artifacts: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls name their members in any order and subset; a member new to the stack rebuilds it without the
    members nobody holds any more; past MAX_RESIDENT a run stacks its own members as before."""
    artifacts = load_artifacts(tiny_artifacts)
    files = next(iter(artifacts.backbones.values()))
    assert files.grouped_head_path is not None
    encoder = TextEncoder(files.tokenizer_path, files.max_length, files.text_prefix)
    ids, mask = pad([row for row, _ in encoder.encode(ANSWERS * 2)])
    hidden = run_trunk(load_session(files.trunk_path, 1, arena=True), ids, mask)
    paths = [spec.serving_members[0].path for spec in artifacts.items.values()]
    heads = GroupedHeads(files.grouped_head_path, 1)
    per_run = GroupedHeads(files.grouped_head_path, 1)
    monkeypatch.setattr(core.grouped_head, "MAX_RESIDENT", len(paths) + 1)
    first, second = GroupedMember(heads, paths[0]), GroupedMember(heads, paths[1])
    slots = np.arange(len(ANSWERS) * 2) % 2

    def expected(members: list[GroupedMember]) -> np.ndarray:
        monkeypatch.setattr(core.grouped_head, "MAX_RESIDENT", 0)
        try:
            return per_run.logits(hidden, mask, slots, members)
        finally:
            monkeypatch.setattr(core.grouped_head, "MAX_RESIDENT", len(paths) + 1)

    for members in ([first, second], [second, first], [first, first]):
        assert np.abs(heads.logits(hidden, mask, slots, members) - expected(members)).max() < 1e-6
    assert len(heads._slot_of) == 2
    del first, members  # (the loop variable held it too)
    gc.collect()
    third = GroupedMember(heads, paths[0])  # the same item reloaded: a new member object
    assert np.abs(heads.logits(hidden, mask, slots, [third, second]) - expected([third, second])).max() < 1e-6
    assert len(heads._slot_of) == 2 and next(iter(heads._stacked.values())).shape[0] == 2  # the dead one left


def test_the_engine_answers_alike_with_batched_and_per_item_heads(tiny_artifacts: Path) -> None:
    rows = [AnswerRow(item_id, text) for text in ANSWERS for item_id in ("item-a", "item-b")]
    batched, per_item = engine(tiny_artifacts, "on"), engine(tiny_artifacts, "off")
    assert all(trunk.grouped for trunk in batched.trunks.values())
    assert not any(trunk.grouped for trunk in per_item.trunks.values())
    on, off = score_now(batched, rows), score_now(per_item, rows)
    for left, right in zip(on, off, strict=True):
        assert isinstance(left, Scored) and isinstance(right, Scored)
        assert left.score == right.score
        assert np.abs(np.asarray(left.probabilities) - np.asarray(right.probabilities)).max() < 1e-5


def test_bound_runs_give_the_plain_runs_logits_and_features(tiny_artifacts: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way a bound run is fed: the trunk's OrtValue or host rows (a round over some of a chunk's rows),
    with the resident stack bound, or past MAX_RESIDENT each run's own stack from the host; pooled features
    (explain) read back too."""
    artifacts = load_artifacts(tiny_artifacts)
    files = next(iter(artifacts.backbones.values()))
    assert files.grouped_head_path is not None
    encoder = TextEncoder(files.tokenizer_path, files.max_length, files.text_prefix)
    ids, mask = pad([row for row, _ in encoder.encode(ANSWERS * 2)])
    trunk = load_session(files.trunk_path, 1, arena=True)
    states = run_trunk_states(trunk, ids, mask, "cpu")
    assert states.bound is not None and np.abs(states.host - run_trunk(trunk, ids, mask)).max() == 0
    specs = list(artifacts.items.values())
    plain, bound = GroupedHeads(files.grouped_head_path, 1), GroupedHeads(files.grouped_head_path, 1, bind_on="cpu")
    slots = np.arange(len(ANSWERS) * 2) % len(specs)

    def both(hidden: object, resident: int) -> None:
        monkeypatch.setattr(core.grouped_head, "MAX_RESIDENT", resident)
        for heads in (plain, bound):  # members made afresh: the resident stack is rebuilt for them
            heads._slot_of.clear()
        expected = plain.run(states.host, mask, slots, [GroupedMember(plain, s.serving_members[0].path)
                                                         for s in specs], pooled=True)
        got = bound.run(hidden, mask, slots, [GroupedMember(bound, s.serving_members[0].path) for s in specs],
                        pooled=True)
        assert got[1] is not None and expected[1] is not None
        assert np.abs(got[0] - expected[0]).max() == 0 and np.abs(got[1] - expected[1]).max() == 0

    both(states.bound, resident=256)  # the trunk's value, the resident stack bound
    both(states.host, resident=256)  # host rows, the resident stack bound
    assert bound._bound  # ... and kept bound
    both(states.bound, resident=1)  # past MAX_RESIDENT: each run's own stack, from the host


def test_io_bound_runs_answer_as_plain_runs_do(tiny_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IO binding (on CUDA by default; forced here on the CPU, the same calls with the values left on the host):
    the trunk's output goes into the batched graph as an OrtValue, with the stacked tensors bound once, and
    every answer comes out as the plain runs give it."""
    bound_runs: list[str] = []
    original = ort.InferenceSession.run_with_iobinding

    def counted(session: ort.InferenceSession, *args: object, **kwargs: object) -> None:
        bound_runs.append(session.get_outputs()[0].name)
        original(session, *args, **kwargs)

    monkeypatch.setattr(ort.InferenceSession, "run_with_iobinding", counted)
    rows = [AnswerRow(item_id, text) for text in ANSWERS for item_id in ("item-a", "item-b")]
    bound = OnnxBackend(Settings(artifacts=tiny_artifacts, grouped_heads="on", io_binding="on", threads=1))
    plain = engine(tiny_artifacts, "on")
    assert all(trunk.keep_states_on == "cpu" for trunk in bound.trunks.values())
    assert not any(trunk.keep_states_on for trunk in plain.trunks.values())
    on = score_now(bound, rows)
    assert {"hidden_states", "logits"} <= set(bound_runs)  # the trunk's run and the batched graph's, both bound
    runs_before = len(bound_runs)
    off = score_now(plain, rows)
    assert len(bound_runs) == runs_before  # the plain engine never binds
    for left, right in zip(on, off, strict=True):
        assert isinstance(left, Scored) and isinstance(right, Scored)
        assert left.score == right.score and left.probabilities == right.probabilities
    # Without the batched graph there is nothing to hand the states to: per-item heads read them on the host.
    per_item = OnnxBackend(Settings(artifacts=tiny_artifacts, grouped_heads="off", io_binding="on", threads=1))
    assert not any(trunk.keep_states_on for trunk in per_item.trunks.values())


def test_a_broken_item_fails_alone_in_a_batched_run(tiny_artifacts: Path, tmp_path: Path) -> None:
    copy = tmp_path / "onnx"
    shutil.copytree(tiny_artifacts, copy)
    spec = load_artifacts(copy).items["item-b"]
    spec.serving_members[0].path.write_bytes(b"not an adapter")
    rows = [AnswerRow("item-a", ANSWERS[0]), AnswerRow("item-b", ANSWERS[0]), AnswerRow("item-a", ANSWERS[1])]
    outcomes = score_now(engine(copy, "on"), rows)
    assert isinstance(outcomes[0], Scored) and isinstance(outcomes[2], Scored)
    assert isinstance(outcomes[1], ItemUnavailable)
    # Under IO binding the failed row leaves a round over some of the chunk: the bound states are copied back
    # for it, and the others score as without binding.
    bound = score_now(OnnxBackend(Settings(artifacts=copy, grouped_heads="on", io_binding="on", threads=1)), rows)
    assert isinstance(bound[1], ItemUnavailable)
    for left, right in ((bound[0], outcomes[0]), (bound[2], outcomes[2])):
        assert isinstance(left, Scored) and isinstance(right, Scored) and left.probabilities == right.probabilities


@pytest.mark.slow
def test_the_export_checked_the_batched_graph_on_every_items_golden_answers(committed_artifacts: Path) -> None:
    manifest = load_artifacts(committed_artifacts).manifest
    for name, entry in manifest["backbones"].items():
        assert entry["grouped_head"]["max_abs_golden_diff"] < 1e-4, name
