"""Pure ASGI middleware, outermost first: the request id and timing of every answer, the access rule for the
operator pages, and the body limit (size and time) that every request passes before it is parsed."""

from __future__ import annotations

import asyncio
import time

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.errors import PayloadTooLarge, RequestTimeout, ScoringError, error_body, headers_of, status_of
from app.request_id import request_id
from app.security import check_key
from app.settings import Settings


async def send_error(send: Send, error: ScoringError) -> None:
    response = JSONResponse(error_body(error), status_of(error), headers=headers_of(error))
    await response({"type": "http"}, _disconnected, send)


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


class RequestEnvelope:
    """On every answer, refusals before routing included (413, 408, 429): X-Request-ID (the client's, or a
    new one), x-process-time, and the request-duration metric by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1") or None
        identifier = request_id(given)
        status = 500

        async def enveloped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = identifier
                headers["x-process-time"] = f"{(time.perf_counter() - started) * 1000:.2f}ms"
            await send(message)

        try:
            await self.app(scope, receive, enveloped)
        finally:
            # The route template, never the raw path: ids in paths must not become label values.
            route = getattr(scope.get("route"), "path", None)
            endpoint = route or ("/metrics" if scope["path"].startswith("/metrics") else "other")
            metrics.REQUEST_SECONDS.labels(endpoint, str(status)).observe(time.perf_counter() - started)


class OpsAccess:
    """With keys configured, /docs, /redoc, /openapi.json and /metrics need a scoring key unless settings
    open them (SCORER_OPEN_DOCS, SCORER_OPEN_METRICS): the schema maps the attack surface, metrics show
    traffic and item ids."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        closed = [] if settings.open_docs else ["/docs", "/redoc", "/openapi.json"]
        self.closed = tuple(closed + ([] if settings.open_metrics else ["/metrics"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.closed and scope["path"].startswith(self.closed):
            authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1") or None
            try:
                check_key(authorization, self.settings.api_keys_sha256, self.settings.admin_keys_sha256, False)
            except ScoringError as error:
                await send_error(send, error)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Reads the whole body before the app sees it: 413 past `limit` bytes (counted as they stream in, as
    Content-Length can lie or be absent, chunked bodies included), 408 when it takes longer than
    `timeout_s` (a stalled client holds no worker slot for ever)."""

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                messages = await self._read(receive)
        except TimeoutError:
            metrics.REJECTED.labels("body_timeout").inc()
            await send_error(send, RequestTimeout(f"request body not received within {self.timeout_s:g} s"))
            return
        if messages is None:
            await self._too_large(send)
            return
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)

    async def _read(self, receive: Receive) -> list[Message] | None:
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away; the app sees the disconnect
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return None
            if not message.get("more_body", False):
                return messages

    async def _too_large(self, send: Send) -> None:
        metrics.REJECTED.labels("too_large").inc()
        await send_error(send, PayloadTooLarge(f"request body over {self.limit} bytes"))
