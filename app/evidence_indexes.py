"""Items' evidence indexes (core/evidence.py) in memory, loaded on an item version's first explain request.

An index is a few MB at most (a few thousand answers x the head's width, fp32 once loaded); one per item version
asked for, kept for the process's life: versions of one item are few, and an old version's index must stay
usable while requests prepared for it finish (as its heads do)."""

from __future__ import annotations

import logging
import threading

from core.evidence import EvidenceIndex
from core.manifest import ItemSpec

log = logging.getLogger("scorer.evidence")


class EvidenceIndexes:
    def __init__(self) -> None:
        self._indexes: dict[tuple[str, str], EvidenceIndex | None] = {}
        self._lock = threading.Lock()

    def get(self, spec: ItemSpec) -> EvidenceIndex | None:
        """The item version's index; None where it has none or its file fails its check (logged once: the
        answers are still scored, without evidence)."""
        if spec.evidence is None:
            return None
        with self._lock:  # one load per version, even when several micro-batches ask at once
            if spec.key not in self._indexes:
                self._indexes[spec.key] = self._load(spec)
            return self._indexes[spec.key]

    @staticmethod
    def _load(spec: ItemSpec) -> EvidenceIndex | None:
        assert spec.evidence is not None
        try:
            index = EvidenceIndex(spec.evidence)
        except (OSError, ValueError, KeyError) as exc:
            log.error("item %s %s: evidence index not loaded: %s", spec.item_id, spec.version, exc)
            return None
        log.info("item %s %s: evidence index of %d answers loaded", spec.item_id, spec.version, spec.evidence.answers)
        return index
