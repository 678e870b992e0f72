"""The batcher's two stages: a batch is finished (combined, decoded) while the next batch's models run, results
reach the right requests, and a failure while finishing fails no neighbour."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from app.backend import AnswerRow, Outcome, PreparedRow
from app.batcher import MicroBatcher
from tests.fake_backend import FakeBackend, FakeRun


class OverlapBackend(FakeBackend):
    """The first finish waits (up to 5 s) for the second batch's model runs to start: only a pipelined
    batcher lets them meet."""

    def __init__(self, fail_finish: bool = False) -> None:
        super().__init__()
        self.fail_finish = fail_finish
        self.second_models = threading.Event()
        self.model_runs = 0
        self.overlapped: list[bool] = []

    def run_models(self, rows: list[PreparedRow]) -> FakeRun:
        self.model_runs += 1
        if self.model_runs == 2:
            self.second_models.set()
        return super().run_models(rows)

    def finish(self, run: FakeRun) -> list[Outcome]:
        if not self.overlapped:
            self.overlapped.append(self.second_models.wait(5))
            if self.fail_finish:
                raise RuntimeError("finishing bug")
        return super().finish(run)


def _submit_three(backend: FakeBackend) -> tuple[Any, ...]:
    async def scenario() -> tuple[Any, ...]:
        batcher = MicroBatcher(backend, wait_ms=0, max_rows=1, max_queue_rows=100)
        batcher.start()
        try:
            texts = ["one", "one two", "one two three"]
            requests = [batcher.submit(backend.prepare([AnswerRow("item-b", text)])) for text in texts]  # type: ignore[arg-type]
            results = tuple(await asyncio.gather(*requests, return_exceptions=True))
            assert batcher.queued_rows == 0 and batcher.background_rows == 0  # every row given back
            return results
        finally:
            await batcher.stop()

    return asyncio.run(scenario())


def test_a_batch_finishes_while_the_next_one_runs_its_models() -> None:
    backend = OverlapBackend()
    results = _submit_three(backend)
    assert backend.overlapped == [True]
    assert [[outcome.score for outcome in result] for result in results] == [[1], [2], [3]]
    assert backend.calls == [1, 1, 1]  # one model run per batch, none repeated


def test_a_failure_while_finishing_is_retried_alone_and_fails_no_neighbour() -> None:
    backend = OverlapBackend(fail_finish=True)
    results = _submit_three(backend)
    assert backend.overlapped == [True]
    # The first batch's finish raised: its request was scored again alone (score_prepared), the others not.
    assert [[outcome.score for outcome in result] for result in results] == [[1], [2], [3]]
    assert backend.calls == [1, 1, 1, 1]


class FailingModels(FakeBackend):
    """The second batch's model runs raise: that request is scored alone (and raises again), the others not."""

    def __init__(self) -> None:
        super().__init__()
        self.model_runs = 0

    def run_models(self, rows: list[PreparedRow]) -> FakeRun:
        self.model_runs += 1
        if self.model_runs == 2:
            raise RuntimeError("model bug")
        return super().run_models(rows)

    def score_prepared(self, rows: list[PreparedRow]) -> list[Outcome]:
        if any(len(row.encoded.ids) == 2 for row in rows):  # the second request's answer
            raise RuntimeError("model bug, again")
        return super().score_prepared(rows)


def test_a_failure_in_the_model_runs_fails_only_its_request() -> None:
    first, second, third = _submit_three(FailingModels())
    assert [outcome.score for outcome in first] == [1] and [outcome.score for outcome in third] == [3]
    assert isinstance(second, RuntimeError)


class SlowFinish(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.finishing = threading.Event()
        self.release = threading.Event()

    def finish(self, run: FakeRun) -> list[Outcome]:
        self.finishing.set()
        self.release.wait(5)
        return super().finish(run)


def test_stopping_lets_a_finishing_batch_deliver_its_results() -> None:
    backend = SlowFinish()

    async def scenario() -> list[Outcome]:
        batcher = MicroBatcher(backend, wait_ms=0, max_rows=4, max_queue_rows=100)
        batcher.start()
        rows = backend.prepare([AnswerRow("item-b", "one two")])
        request = asyncio.create_task(batcher.submit(rows))  # type: ignore[arg-type]
        assert await asyncio.to_thread(backend.finishing.wait, 5)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0.05)  # the stop is under way while the batch is still finishing
        backend.release.set()
        await stopping
        assert batcher.queued_rows == 0
        return await request

    assert [outcome.score for outcome in asyncio.run(scenario())] == [2]  # type: ignore[union-attr]
