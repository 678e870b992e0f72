"""Optional (SCORER_WATCH_ARTIFACTS_S > 0): serve items that an export added or changed, without an admin call.

Polls the manifest's modification time rather than using inotify: the folder is often a network volume,
where file events do not arrive, and a stat every few seconds costs nothing. Only items whose version (or
evidence index) in the manifest changed since the last look are reloaded, so an admin rollback stays in
force until the next export of that item. In Redis mode the switch is announced like an admin reload, so
replicas that do not watch follow too.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from app.backend import Backend
from app.version_sync import VersionSync
from core.manifest import read_manifest

log = logging.getLogger("scorer.watch")


class ArtifactWatcher:
    def __init__(self, root: Path, backend: Backend, interval_s: float, versions: VersionSync | None) -> None:
        self.root = root
        self.backend = backend
        self.interval_s = interval_s
        self.versions = versions
        self._stamp = self._mtime()
        self._seen = item_stamps(root)  # what the backend loaded at start-up
        self._task: asyncio.Task[None] | None = None

    def _mtime(self) -> int:
        try:
            return (self.root / "manifest.json").stat().st_mtime_ns
        except OSError:
            return 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="artifact-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception as exc:  # a half-visible export or a bad file: look again next round
                log.warning("artifact folder check failed: %s", exc)

    async def check(self) -> list[str]:
        """Reload the items whose manifest version changed; returns their ids."""
        stamp = self._mtime()
        if stamp == self._stamp:
            return []
        current = item_stamps(self.root)
        changed = [item_id for item_id, stamp in current.items() if self._seen.get(item_id) != stamp]
        self._stamp, self._seen = stamp, current
        for item_id in changed:
            try:
                spec = await asyncio.to_thread(self.backend.reload, item_id)
            except Exception as exc:  # the old version keeps answering
                log.error("item %s %s in the artifact folder not loaded: %s", item_id, current[item_id][0], exc)
                continue
            log.info("item %s now serves %s (artifact folder changed)", item_id, spec.version)
            if self.versions is not None:
                await self.versions.announce(spec.item_id, spec.version)
        return changed


def item_stamps(root: Path) -> dict[str, tuple[str, str]]:
    """Item id -> (version, evidence index hash): `make serve` adds the evidence of the items it already serves
    in its background stage, under the same version."""
    return {item_id: (str(entry["version"]), str((entry.get("evidence") or {}).get("sha256", "")))
            for item_id, entry in read_manifest(root).get("items", {}).items()}
