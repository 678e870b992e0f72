"""The teachers' review page (/review): choose an item, paste or upload a class set, see scores with the
flagged rows first, open a row's evidence, correct scores and download the result as add-item's CSV.

Plain HTML, JavaScript and CSS shipped inside the package (app/static/review, package data), served by the
service itself: no CDN, no build step. The page and its assets are public, like /docs' assets; every API
call the page makes carries the key the teacher types in (Authorization: Bearer), so the API's access rules
are unchanged. Strict headers: the page loads only its own files (no inline script), cannot be framed and
sends no Referer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS = Path(__file__).resolve().parent / "static" / "review"
PREFIX = "/static/review"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install_review(app: FastAPI) -> None:
    """GET /review (the page) and its assets under /static/review."""
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="review-assets")
    page = (ASSETS / "index.html").read_text(encoding="utf-8")

    @app.get("/review", include_in_schema=False)
    async def review() -> HTMLResponse:
        return HTMLResponse(page, headers=HEADERS)
