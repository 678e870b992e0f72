"""Refuse interactive scoring requests while the inference queue is full, before their body is read.

Under overload the refusal must cost almost nothing: parsing a 2 MB batch only to answer 429 would spend
the CPU the queue is waiting for, and the refusals would queue up behind each other. Job rows do not count
here: they wait in the batcher's background queue, behind every interactive request."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app import metrics
from app.errors import Overloaded
from app.middleware import send_error

SCORING_PATHS = ("/score/", "/batch")  # /jobs is accepted even then: jobs wait for room in the queue


class Admission:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(SCORING_PATHS):
            batcher = getattr(scope["app"].state, "batcher", None)
            if batcher is not None and batcher.queued_rows >= batcher.max_queue_rows:
                metrics.REJECTED.labels("overloaded").inc()
                await send_error(send, Overloaded(f"queue full ({batcher.queued_rows} answers waiting); "
                                                  "retry shortly"))
                return
        await self.app(scope, receive, send)
