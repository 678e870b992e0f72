"""/docs and /redoc render without network access: every script, style sheet and icon they load is served by
the service itself (FastAPI's defaults load them from a CDN, blank on an air-gapped site)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server


@pytest.fixture(scope="module")
def docs_server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server({"SCORER_ARTIFACTS": str(tiny_artifacts)}, tmp_path_factory.mktemp("docs") / "server.log")
    server.wait_ready()
    yield server
    server.stop()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_pages_load_only_local_assets(docs_server: Server, page: str) -> None:
    html = httpx.get(docs_server.url + page, timeout=30)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = re.findall(r"""(?:src|href)\s*[=:]\s*["']([^"']+)["']""", html.text)
    assert urls, html.text[:500]
    external = [url for url in urls if re.match(r"(https?:)?//", url)]
    assert not external, external
    assert "cdn.jsdelivr" not in html.text and "fonts.googleapis" not in html.text
    for url in urls:
        if url.startswith("/static/"):
            asset = httpx.get(docs_server.url + url, timeout=30)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert httpx.get(docs_server.url + "/openapi.json", timeout=30).json()["info"]["title"]
