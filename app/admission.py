"""Refuse scoring requests while the inference queue is full, before their body is read or parsed.

Under overload the refusal must cost almost nothing: parsing a 2 MB batch only to answer 429 would spend
the CPU the queue is waiting for, and the refusals would queue up behind each other."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app import metrics
from app.errors import Overloaded, error_body
from app.request_id import request_id

SCORING_PATHS = ("/score/", "/batch")  # /jobs is accepted even then: jobs wait for room in the queue


class Admission:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(SCORING_PATHS):
            batcher = getattr(scope["app"].state, "batcher", None)
            if batcher is not None and batcher.queued_rows >= batcher.max_queue_rows:
                metrics.REJECTED.labels("overloaded").inc()
                error = Overloaded(f"queue full ({batcher.queued_rows} answers waiting); retry shortly")
                given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1") or None
                headers = {"Retry-After": "1", "x-request-id": request_id(given)}
                await JSONResponse(error_body(error), 429, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)
