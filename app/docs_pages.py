"""/docs (Swagger UI) and /redoc with their scripts served from the installed package, never from a CDN.

FastAPI's own pages load Swagger UI and ReDoc from cdn.jsdelivr.net: on an offline or air-gapped site they
are blank. fastapi-offline ships the same assets inside its wheel (`fastapi_offline/static`); we use only
those files and FastAPI's own page builders, so nothing else changes. The assets live under /static/docs/
(public files, open like /health; the pages themselves follow SCORER_OPEN_DOCS as before).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
PREFIX = "/static/docs"


def install_docs(app: FastAPI) -> None:
    """The app must be built with docs_url=None and redoc_url=None (these routes replace FastAPI's)."""
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} – API",
                                   swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{PREFIX}/swagger-ui.css",
                                   swagger_favicon_url=f"{PREFIX}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} – API",
                              redoc_js_url=f"{PREFIX}/redoc.standalone.js",
                              redoc_favicon_url=f"{PREFIX}/favicon.png", with_google_fonts=False)
