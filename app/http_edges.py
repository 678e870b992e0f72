"""HTTP details a client may rightly expect, handled before routing (pure ASGI, outermost):

- `HEAD` on every GET route answers like GET without a body (RFC 9110 §9.3.2; FastAPI routes GET only);
- a trailing slash names the same resource (`/items/` is `/items`) instead of a 307 to follow;
- `/metrics` and `/metrics/` are both the Prometheus page (it is mounted at `/metrics/`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MOUNTED = "/metrics"


class HttpEdges:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope["path"])
        if path == MOUNTED:
            path = MOUNTED + "/"
        elif len(path) > 1 and path.endswith("/") and not path.startswith(MOUNTED + "/"):
            path = path.rstrip("/") or "/"
        if path != scope["path"]:  # only a rewritten path replaces raw_path (its percent-encoding stays otherwise)
            scope = {**scope, "path": path, "raw_path": path.encode()}
        if scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":  # headers (content-length included) stay as for GET
                message = {**message, "body": b"", "more_body": False}
                if sent_end:
                    return
                sent_end.append(True)
            await send(message)

        sent_end: list[bool] = []
        await self.app({**scope, "method": "GET"}, receive, without_body)
