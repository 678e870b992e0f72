"""A minimal keep-alive HTTP/1.1 JSON client on asyncio streams, for the load generator.

httpx's async client costs several ms of CPU per request; on a 2-core CI machine 32–96 of them measure the
client's own queueing instead of the service. This one does just what the load needs: POST JSON, read
status, headers and a Content-Length body, keep the connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any


class TransportError(Exception):
    """No HTTP answer: refused, reset, closed early, or timed out."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class Connection:
    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, payload: Any, headers: dict[str, str]) -> Reply:
        try:
            return await asyncio.wait_for(self._post(path, payload, headers), self.timeout_s)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            await self.close()
            raise TransportError(type(exc).__name__) from exc

    async def _post(self, path: str, payload: Any, headers: dict[str, str]) -> Reply:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        body = json.dumps(payload).encode()
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)
        status = int(status_line.split()[1])
        reply_headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            reply_headers[name.strip().lower()] = value.strip()
        content = await reader.readexactly(int(reply_headers.get("content-length", "0")))
        if reply_headers.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, reply_headers, json.loads(content) if content else None)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
