"""Assembles the service: lifespan, routers, error handlers and middleware, each from its own module."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import make_asgi_app

from app.admission import Admission
from app.backend import Backend
from app.docs_pages import install_docs
from app.error_handlers import install_error_handlers
from app.http_edges import HttpEdges
from app.lifespan import BackendFactory, lifespan_for
from app.middleware import BodyLimit, OpsAccess, RequestEnvelope
from app.review_page import install_review
from app.routes import admin_router, ops_router, scoring_router
from app.settings import Settings, get_settings


def default_backend(settings: Settings) -> Backend:
    from app.onnx_backend import OnnxBackend

    return OnnxBackend(settings)


def create_app(settings: Settings | None = None, backend_factory: BackendFactory = default_backend) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="LoRA short-answer scorer", version="0.1.0", lifespan=lifespan_for(settings, backend_factory),
                  docs_url=None, redoc_url=None,  # app/docs_pages.py serves them without a CDN
                  description="Rubric scores for student short answers: one shared backbone, one small "
                              "LoRA module per item.")
    app.state.settings = settings
    app.state.draining = False
    app.state.version_sync = None
    app.include_router(scoring_router)
    app.include_router(ops_router)
    app.include_router(admin_router)
    app.mount("/metrics", make_asgi_app())
    install_docs(app)
    install_review(app)
    install_error_handlers(app)
    # Added innermost first, so the request id and the timing wrap everything, early refusals included.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(Admission)  # a full queue refuses before the body is read
    app.add_middleware(OpsAccess, settings=settings)
    app.add_middleware(RequestEnvelope)
    app.add_middleware(HttpEdges)  # HEAD and trailing slashes, before anything reads the path
    return app
