"""Assembles the service: lifespan (backend, Redis, batcher, jobs), middleware, routes, error table."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import metrics
from app.admission import Admission
from app.artifact_watch import ArtifactWatcher
from app.backend import Backend
from app.batcher import MicroBatcher
from app.duplicate_cache import DuplicateCache, MemoryDuplicateCache, RedisDuplicateCache
from app.errors import ScoringError, error_body, status_of
from app.job_store import JobStore, MemoryJobStore, RedisJobStore
from app.jobs import JobRunner
from app.middleware import BodyLimit, OpsAccess, RequestIdHeader
from app.redis_clients import JOB_STORE_TIMEOUT_S, check_job_store, redis_client
from app.routes import admin_router, ops_router, scoring_router
from app.scoring import ScoringService
from app.settings import Settings, get_settings
from app.version_sync import VersionSync

log = logging.getLogger("scorer")
BackendFactory = Callable[[Settings], Backend]


def default_backend(settings: Settings) -> Backend:
    from app.onnx_backend import OnnxBackend

    return OnnxBackend(settings)


def create_app(settings: Settings | None = None, backend_factory: BackendFactory = default_backend) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.draining = False
        backend = await asyncio.to_thread(backend_factory, settings)
        app.state.backend = backend
        redis = redis_client(settings.redis_url, settings.redis_timeout_ms / 1000)
        durable = redis_client(settings.job_redis_url or settings.redis_url, JOB_STORE_TIMEOUT_S)
        if durable is not None:
            await check_job_store(durable)
        duplicates: DuplicateCache = MemoryDuplicateCache(settings.duplicate_cache_entries)
        if redis is not None:
            duplicates = RedisDuplicateCache(redis, settings.duplicate_cache_ttl_s, settings.redis_breaker_s)
            await duplicates.ping()
        store: JobStore = (RedisJobStore(durable, settings.job_ttl_s, uuid.uuid4().hex) if durable
                           else MemoryJobStore(settings.job_ttl_s))
        batcher = MicroBatcher(backend, settings.batch_wait_ms, settings.max_batch_rows, settings.max_queue_rows)
        batcher.start()
        app.state.batcher = batcher
        scoring = app.state.scoring = ScoringService(backend, batcher, duplicates, settings)
        app.state.jobs = JobRunner(store, lambda rows: scoring.score_rows(rows, background=True),
                                   settings.job_lease_s, settings.max_running_jobs, settings.max_batch_rows,
                                   settings.max_job_rows_per_key)
        await asyncio.to_thread(backend.warm_up)
        # Redis mode: adopt the versions other replicas switched to, and follow their later switches.
        versions = (VersionSync(durable, backend, settings.artifacts, settings.version_resync_s) if durable
                    else None)
        if versions is not None:
            await versions.start()
        app.state.version_sync = versions
        watcher = (ArtifactWatcher(settings.artifacts, backend, settings.watch_artifacts_s, versions)
                   if settings.watch_artifacts_s > 0 else None)
        if watcher is not None:
            watcher.start()
        app.state.jobs.start()  # Redis mode: also resumes jobs a stopped process left unfinished
        log.info("ready: %d items, duplicate cache %s, jobs %s", len(backend.items()),
                 "redis" if redis else "in-process", "redis" if durable else "in-process")
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
            for client in (redis, durable):
                if client is not None:
                    await client.aclose()

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
        return response

    # Added innermost first: RequestIdHeader ends up outermost, so even early refusals carry the id.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(Admission)  # a full queue refuses before the body is read
    app.add_middleware(OpsAccess, settings=settings)
    app.add_middleware(RequestIdHeader)
    return app
