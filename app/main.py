"""Assembles the service: lifespan (backend, Redis, batcher, jobs), middleware, routes, error table."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.admission import Admission
from app.artifact_watch import ArtifactWatcher
from app.backend import Backend
from app.batcher import MicroBatcher
from app.duplicate_cache import DuplicateCache, MemoryDuplicateCache, RedisDuplicateCache
from app.errors import PayloadTooLarge, ScoringError, error_body, status_of
from app.jobs import JobRunner, JobStore, MemoryJobStore, RedisJobStore
from app.request_id import request_id
from app.routes import _score_job_rows, admin_router, ops_router, scoring_router
from app.scoring import ScoringService
from app.settings import Settings, get_settings
from app.version_sync import VersionSync

log = logging.getLogger("scorer")
BackendFactory = Callable[[Settings], Backend]


def default_backend(settings: Settings) -> Backend:
    from app.onnx_backend import OnnxBackend

    return OnnxBackend(settings)


class BodyLimit:
    """413 for bodies over the limit, counted as they stream in (Content-Length can lie or be absent)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(f"request body over {self.limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        metrics.REJECTED.labels("too_large").inc()
        response = JSONResponse(error_body(PayloadTooLarge(f"request body over {self.limit} bytes")), 413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _redis_client(settings: Settings) -> Any:
    if not settings.redis_url:
        return None
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # One immediate retry (a pooled connection may be stale after a Redis restart), no backoff: redis-py's
    # default (10 retries, exponential backoff) holds every request for seconds while Redis is down.
    return aioredis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0,
                             health_check_interval=10, retry=Retry(NoBackoff(), 1))


def create_app(settings: Settings | None = None, backend_factory: BackendFactory = default_backend) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.draining = False
        backend = await asyncio.to_thread(backend_factory, settings)
        app.state.backend = backend
        redis = _redis_client(settings)
        duplicates: DuplicateCache = (RedisDuplicateCache(redis, settings.duplicate_cache_ttl_s) if redis
                                      else MemoryDuplicateCache(settings.duplicate_cache_entries))
        store: JobStore = RedisJobStore(redis, settings.job_ttl_s) if redis else MemoryJobStore(settings.job_ttl_s)
        batcher = MicroBatcher(backend, settings.batch_wait_ms, settings.max_batch_rows, settings.max_queue_rows)
        batcher.start()
        app.state.batcher = batcher
        app.state.scoring = ScoringService(backend, batcher, duplicates, settings)
        app.state.jobs = JobRunner(store, lambda rows: _score_job_rows(app.state.scoring, rows),
                                   settings.job_lease_s)
        await asyncio.to_thread(backend.warm_up)
        # Redis mode: adopt the versions other replicas switched to, and follow their later switches.
        versions = VersionSync(redis, backend, settings.artifacts, settings.version_resync_s) if redis else None
        if versions is not None:
            await versions.start()
        app.state.version_sync = versions
        watcher = (ArtifactWatcher(settings.artifacts, backend, settings.watch_artifacts_s, versions)
                   if settings.watch_artifacts_s > 0 else None)
        if watcher is not None:
            watcher.start()
        app.state.jobs.start()  # Redis mode: also resumes jobs a stopped process left unfinished
        log.info("ready: %d items, redis %s", len(backend.items()), "on" if redis else "off (in-process)")
        try:
            yield
        finally:
            app.state.draining = True  # readiness goes 503 first; uvicorn drains in-flight requests
            if watcher is not None:
                await watcher.stop()
            if versions is not None:
                await versions.stop()
            await app.state.jobs.stop()
            await batcher.stop()
            if redis is not None:
                await redis.aclose()

    app = FastAPI(title="LoRA short-answer scorer", version="0.1.0", lifespan=lifespan,
                  description="Rubric scores for student short answers: one shared backbone, one small "
                              "LoRA module per item.")
    app.state.settings = settings
    app.state.draining = False
    app.state.version_sync = None
    app.include_router(scoring_router)
    app.include_router(ops_router)
    app.include_router(admin_router)
    app.mount("/metrics", make_asgi_app())

    @app.exception_handler(ScoringError)
    async def scoring_error(_: Request, error: ScoringError) -> JSONResponse:
        headers = {"Retry-After": "1"} if status_of(error) in (429, 503) else None
        return JSONResponse(error_body(error), status_code=status_of(error), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid")
        return JSONResponse({"error": message, "error_type": "validation"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http")
        return JSONResponse({"error": str(error.detail), "error_type": kind}, status_code=error.status_code)

    @app.middleware("http")
    async def timing(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        endpoint = getattr(route, "path", None) or ("/metrics" if request.url.path == "/metrics" else "other")
        metrics.REQUEST_SECONDS.labels(endpoint, str(response.status_code)).observe(elapsed)
        response.headers["x-process-time"] = f"{elapsed * 1000:.2f}ms"
        response.headers["x-request-id"] = request_id(request.headers.get("x-request-id"))
        return response

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Admission)  # outermost: a full queue refuses before anything else runs
    return app
