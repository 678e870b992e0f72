"""Redis mode: every replica serves the same adapter version of each item, switched without restarts.

A replica whose admin reload or rollback succeeded records (item, version) in a Redis hash and publishes it
on a channel. Every replica subscribes and loads that version from the shared artifact folder. The hash is
the source of truth: pub/sub delivers at most once (a replica that is reconnecting misses messages), so the
hash is read at start-up, after every (re)subscription and every `version_resync_s` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from app import metrics
from app.backend import Backend

log = logging.getLogger("scorer.versions")
VERSIONS_KEY = "scorer:item-versions"  # hash: item id -> adapter version every replica should serve
CHANNEL = "scorer:item-versions:changed"  # message: {"item_id": ..., "version": ...}
RETRY_S = 1.0  # pause before resubscribing after a Redis error


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class VersionSync:
    def __init__(self, client: Any, backend: Backend, resync_s: float) -> None:
        self.client = client
        self.backend = backend
        self.resync_s = resync_s
        self._task: asyncio.Task[None] | None = None
        self._reported: set[tuple[str, str]] = set()  # versions that failed to load: logged once each

    async def announce(self, item_id: str, version: str) -> bool:
        """Tell the other replicas; False (and a warning) when Redis is unreachable: they catch up later."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(VERSIONS_KEY, item_id, version)
                pipe.publish(CHANNEL, json.dumps({"item_id": item_id, "version": version}))
                await pipe.execute()
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("item %s %s: not announced to other replicas (%s)", item_id, version, type(exc).__name__)
            return False
        return True

    async def start(self) -> None:
        """Adopt the recorded versions before serving, then follow changes in the background."""
        await self.sync_all()
        self._task = asyncio.create_task(self._follow(), name="version-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def sync_all(self) -> None:
        try:
            recorded = await self.client.hgetall(VERSIONS_KEY)
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("item versions not read from redis (%s); serving the manifest's", type(exc).__name__)
            return
        for item_id, version in recorded.items():
            await self.apply(_text(item_id), _text(version))

    async def apply(self, item_id: str, version: str) -> None:
        current = self.backend.items().get(item_id)
        if current is not None and current.version == version:
            return  # also our own announcements, which come back to us
        try:
            await asyncio.to_thread(self.backend.activate, item_id, version)
        except Exception as exc:  # keep serving the current version; the next resync tries again
            if (item_id, version) not in self._reported:
                self._reported.add((item_id, version))
                log.error("item %s %s announced by another replica cannot be served here: %s", item_id, version,
                          exc)
            return
        log.info("item %s switched to %s (announced through redis)", item_id, version)

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    await self.sync_all()  # whatever changed while we were not subscribed
                    next_resync = loop.time() + self.resync_s
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None and message.get("type") == "message":
                            await self._on_message(message["data"])
                        if loop.time() >= next_resync:
                            await self.sync_all()
                            next_resync = loop.time() + self.resync_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.REDIS_ERRORS.inc()
                log.warning("version channel lost (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(RETRY_S)

    async def _on_message(self, data: bytes | str) -> None:
        try:
            payload = json.loads(_text(data))
            item_id, version = str(payload["item_id"]), str(payload["version"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed message on %s", CHANNEL)
            return
        await self.apply(item_id, version)
