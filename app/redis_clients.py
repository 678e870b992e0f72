"""The two Redis roles: a fast, evictable duplicate cache and a durable job store.

They may be one Redis only when it never evicts: a cache Redis is normally `allkeys-lru` (full means old
entries go), and under that policy ordinary scoring traffic evicts accepted jobs. So jobs (and the shared
item versions) go to SCORER_JOB_REDIS_URL when set, and the service refuses to start on a job store that
evicts. Timeouts differ: a cache call must never cost a request more than a few hundred ms; a job write
may wait longer."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("scorer.redis")
JOB_STORE_TIMEOUT_S = 1.0  # per socket operation; with one retry a hung job store costs a request <= 2 s once


class Breaker:
    """A circuit breaker for one Redis role: after a failure no call waits on that Redis for `open_s`; then
    one call probes it (half-open) while the others keep skipping until the probe answers."""

    def __init__(self, open_s: float) -> None:
        self.open_s = open_s
        self._closed_from = 0.0  # monotonic time from which calls may go to Redis again

    def allowed(self) -> bool:
        now = time.monotonic()
        if now < self._closed_from:
            return False
        if self._closed_from:
            self._closed_from = now + self.open_s
        return True

    def failed(self) -> bool:
        """Records a failure; True where it opens the breaker (one log line per outage, not per request)."""
        opened = not self._closed_from
        self._closed_from = time.monotonic() + self.open_s
        return opened

    def succeeded(self) -> bool:
        """Records an answer; True where it closes an open breaker."""
        was_open = bool(self._closed_from)
        self._closed_from = 0.0
        return was_open


def redis_client(url: str | None, timeout_s: float) -> Any:
    if not url:
        return None
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # One immediate retry (a pooled connection may be stale after a Redis restart), no backoff: redis-py's
    # default (10 retries, exponential backoff) holds every request for seconds while Redis is down.
    return aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                             health_check_interval=10, retry=Retry(NoBackoff(), 1))


async def check_job_store(client: Any) -> None:
    """Refuse a job store that evicts keys; warn about one that forgets them on restart."""
    from redis.exceptions import ResponseError

    try:
        config = await client.config_get("maxmemory-policy")
        persistence = {**await client.config_get("appendonly"), **await client.config_get("save")}
    except ResponseError:  # CONFIG renamed or denied (managed Redis): we cannot see, so we say so
        log.warning("cannot read the job store's configuration; make sure it uses maxmemory-policy "
                    "noeviction and persistence (AOF), or accepted jobs can be lost")
        return
    except Exception as exc:
        log.warning("job store unreachable at start-up (%s); /jobs answers 503 until it is back",
                    type(exc).__name__)
        return
    policy = str(config.get("maxmemory-policy", ""))
    if policy != "noeviction":
        raise RuntimeError(f"the job store Redis evicts keys (maxmemory-policy {policy}): accepted jobs would be "
                           "lost under memory pressure. Point SCORER_JOB_REDIS_URL at a Redis with "
                           "maxmemory-policy noeviction (compose and k8s ship one: redis-jobs)")
    if persistence.get("appendonly") == "no" and not persistence.get("save"):
        log.warning("the job store Redis has no persistence (appendonly no, no save points): a Redis restart "
                    "loses every accepted job")
