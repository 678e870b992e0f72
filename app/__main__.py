"""`python -m app`: serve with uvicorn on the configured host and port."""

from __future__ import annotations

import argparse
import logging
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

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
                            timeout_graceful_shutdown=30, access_log=False)
    DrainingServer(config, app).run()
    return 0


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT readiness turns 503 at once; uvicorn then finishes the requests in flight."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.scoring_app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.scoring_app.state.draining = True
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    sys.exit(main())
