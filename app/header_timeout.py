"""Slow-header (slowloris) connections closed: uvicorn has no header timeout of its own.

A client that opens a connection and trickles its request line and headers would hold a connection (and a
file descriptor) forever; its keep-alive timeout only starts after a response. This protocol gives every
request `timeout_s` from its first byte (or from the connection's start) until its headers are complete,
then closes the connection. The body has its own limit (SCORER_BODY_TIMEOUT_S, app/middleware.py).
Subclasses uvicorn's httptools protocol (what `uvicorn[standard]` runs) rather than adding a reverse proxy:
the service is meant to be safe when exposed directly too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a keep-alive connection's next request
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.timeout_s, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def header_timeout_protocol(timeout_s: float) -> type[Any]:
    """The protocol class uvicorn's `http=` takes, with this header timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"timeout_s": timeout_s})
