"""Redis mode: every replica serves the same adapter version of each item, switched without restarts.

A replica whose admin reload or rollback succeeded records (item, version) in a Redis hash and publishes it
on a channel. Every replica subscribes and loads that version from the shared artifact folder. The hash is
the source of truth: pub/sub delivers at most once (a replica that is reconnecting misses messages), so the
hash is read at start-up, after every (re)subscription and every `version_resync_s` seconds.

Each record also names the item's version in the export manifest at the time of the switch (its basis). A
replica follows a record only while its own manifest still names that basis for the item: a switch holds
until the item is exported again. Without this, a version pinned by an old admin reload would override the
newer export in the next image of a rolling update (with artifacts baked into the image, the older version
is still in the manifest's history and would be found).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from app import metrics
from app.backend import Backend
from core.manifest import item_versions, read_manifest

log = logging.getLogger("scorer.versions")
VERSIONS_KEY = "scorer:item-versions"  # hash: item id -> {"version", "basis"} every replica should serve
CHANNEL = "scorer:item-versions:changed"  # message: {"item_id", "version", "basis"}
RETRY_S = 1.0  # pause before resubscribing after a Redis error


def manifest_versions(root: Path) -> dict[str, str]:
    """Item id -> version as the export manifest on disk names it now (not what this process serves)."""
    return item_versions(read_manifest(root))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class VersionSync:
    def __init__(self, client: Any, backend: Backend, artifacts: Path, resync_s: float) -> None:
        self.client = client
        self.backend = backend
        self.artifacts = artifacts
        self.resync_s = resync_s
        self._task: asyncio.Task[None] | None = None
        self._reported: set[tuple[str, str, str]] = set()  # records not followed: logged once each

    async def announce(self, item_id: str, version: str) -> bool:
        """Tell the other replicas; False (and a warning) when Redis is unreachable: they catch up later."""
        try:
            basis = (await asyncio.to_thread(manifest_versions, self.artifacts)).get(item_id, version)
            record = json.dumps({"version": version, "basis": basis})
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(VERSIONS_KEY, item_id, record)
                pipe.publish(CHANNEL, json.dumps({"item_id": item_id, "version": version, "basis": basis}))
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
        on_disk = await self._on_disk() if recorded else None
        if on_disk is None:
            return
        for item_id, record in recorded.items():
            parsed = _parse(_text(record))
            if parsed is not None:
                await self.apply(_text(item_id), *parsed, on_disk)

    async def apply(self, item_id: str, version: str, basis: str, on_disk: dict[str, str]) -> None:
        current = self.backend.items().get(item_id)
        if current is not None and current.version == version:
            return  # also our own announcements, which come back to us
        if on_disk.get(item_id) != basis:
            self._report(item_id, version, basis, f"this replica's manifest has {on_disk.get(item_id)}: "
                         "the item was exported again since that switch (or other artifacts are mounted)")
            return
        try:
            await asyncio.to_thread(self.backend.activate, item_id, version)
        except Exception as exc:  # keep serving the current version; the next resync tries again
            self._report(item_id, version, basis, str(exc))
            return
        log.info("item %s switched to %s (announced through redis)", item_id, version)

    async def _on_disk(self) -> dict[str, str] | None:
        try:
            return await asyncio.to_thread(manifest_versions, self.artifacts)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("export manifest in %s not readable (%s); item versions not synced", self.artifacts, exc)
            return None

    def _report(self, item_id: str, version: str, basis: str, why: str) -> None:
        if (item_id, version, basis) not in self._reported:
            self._reported.add((item_id, version, basis))
            log.warning("item %s %s recorded by another replica is not served here: %s", item_id, version, why)

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
                            await self._on_message(_text(message["data"]))
                        if loop.time() >= next_resync:
                            await self.sync_all()
                            next_resync = loop.time() + self.resync_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.REDIS_ERRORS.inc()
                log.warning("version channel lost (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(RETRY_S)

    async def _on_message(self, data: str) -> None:
        try:
            item_id = str(json.loads(data)["item_id"])
        except (ValueError, KeyError, TypeError):
            item_id = ""
        parsed = _parse(data)
        if not item_id or parsed is None:
            log.warning("ignored a malformed message on %s", CHANNEL)
            return
        on_disk = await self._on_disk()
        if on_disk is not None:
            await self.apply(item_id, *parsed, on_disk)


def _parse(record: str) -> tuple[str, str] | None:
    """(version, basis) from a hash value or channel message; None when malformed."""
    try:
        payload = json.loads(record)
        return str(payload["version"]), str(payload["basis"])
    except (ValueError, KeyError, TypeError):
        return None
