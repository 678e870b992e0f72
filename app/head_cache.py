"""LRU cache of item members' runners keyed by (item id, version, member index), budgeted in bytes, with pins.

A miss loads the head once even when many callers miss together (one loader, the others wait)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from app import metrics
from core.lexical_runtime import LexicalHead
from core.manifest import ItemSpec
from core.onnx_runtime import HeadRunner

MemberRunner = HeadRunner | LexicalHead
CacheKey = tuple[str, str, int]


class HeadCache:
    def __init__(self, loader: Callable[[ItemSpec, int], MemberRunner], capacity_bytes: int,
                 pinned: set[str] | None = None) -> None:
        self._loader = loader
        self.capacity_bytes = capacity_bytes
        self.pinned = pinned or set()
        self._heads: OrderedDict[CacheKey, MemberRunner] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[CacheKey, threading.Lock] = {}
        self.used_bytes = 0
        metrics.CACHE_BYTES.labels("capacity").set(capacity_bytes)

    def __contains__(self, key: CacheKey) -> bool:
        with self._lock:
            return key in self._heads

    def __len__(self) -> int:
        return len(self._heads)

    def has_item(self, spec: ItemSpec) -> bool:
        """Every member of this version is loaded."""
        return all((spec.item_id, spec.version, index) in self for index in range(len(spec.serving_members)))

    def get(self, spec: ItemSpec, index: int = 0) -> MemberRunner:
        key = (spec.item_id, spec.version, index)
        with self._lock:
            head = self._hit(key)
            if head is not None:
                return head
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # single flight: the first caller loads, the rest find it cached
            with self._lock:
                head = self._hit(key)
            if head is not None:
                return head
            metrics.CACHE_EVENTS.labels("miss").inc()
            started = time.perf_counter()
            try:
                head = self._loader(spec, index)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            metrics.TASK_SWITCH_SECONDS.labels(spec.item_id).observe(time.perf_counter() - started)
            self._insert(key, head)
            return head

    def _hit(self, key: CacheKey) -> MemberRunner | None:
        """Caller holds the lock."""
        head = self._heads.get(key)
        if head is not None:
            self._heads.move_to_end(key)
            metrics.CACHE_EVENTS.labels("hit").inc()
        return head

    def _insert(self, key: CacheKey, head: MemberRunner) -> None:
        with self._lock:
            self._heads[key] = head
            self.used_bytes += head.nbytes
            for old_key in list(self._heads):
                if self.used_bytes <= self.capacity_bytes:
                    break
                if old_key == key or old_key[0] in self.pinned:
                    continue
                evicted = self._heads.pop(old_key)  # dropping the last reference releases its session
                self.used_bytes -= evicted.nbytes
                metrics.CACHE_EVENTS.labels("eviction").inc()
            metrics.HEADS_LOADED.set(len(self._heads))
            metrics.CACHE_BYTES.labels("used").set(self.used_bytes)

    def drop(self, item_id: str) -> None:
        """Forget every cached version of an item (its file changed or went bad)."""
        with self._lock:
            for key in [k for k in self._heads if k[0] == item_id]:
                self.used_bytes -= self._heads.pop(key).nbytes
            metrics.HEADS_LOADED.set(len(self._heads))
            metrics.CACHE_BYTES.labels("used").set(self.used_bytes)
