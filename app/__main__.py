"""`python -m app`: serve with uvicorn on the configured host and port."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from app.header_timeout import header_timeout_protocol
from app.main import create_app
from app.security import is_loopback
from app.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("scorer")
    if not settings.api_keys_sha256 and not settings.admin_keys_sha256:
        if not is_loopback(settings.host):
            log.error("refusing to bind %s without API keys: set SCORER_API_KEYS_SHA256 "
                      "(or bind 127.0.0.1)", settings.host)
            return 2
        log.warning("no API keys configured: serving without authentication on loopback %s only",
                    settings.host)
    # One worker process: the trunk and the head cache are per process; scale out with replicas.
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=30, access_log=False,
                            http=header_timeout_protocol(settings.header_timeout_s))
    DrainingServer(config, app, settings.drain_delay_s).run()
    return 0


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT readiness turns 503 at once; after `drain_delay_s` (still serving, so a load
    balancer has time to see the 503 and stop routing here) uvicorn closes the listener and finishes the
    requests in flight. A second signal skips the delay."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_delay_s: float = 0.0) -> None:
        super().__init__(config)
        self.scoring_app = app
        self.drain_delay_s = drain_delay_s
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.scoring_app.state.draining = True
        jobs = getattr(self.scoring_app.state, "jobs", None)
        if jobs is not None:
            jobs.pause()  # start no new job here; interactive requests in flight finish first
        if self.drain_delay_s > 0 and self._exit_at is None:
            # Runs in the signal handler: only record the deadline; on_tick (every 0.1 s) acts on it.
            self._exit_at = time.monotonic() + self.drain_delay_s
            return
        # uvicorn's own handler re-raises the signal once it has shut down, so a drained, clean stop would end
        # with status -15; a drained stop is a clean exit (0). A second SIGINT still forces the exit.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


if __name__ == "__main__":
    sys.exit(main())
