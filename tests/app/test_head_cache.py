"""The head cache: byte budget, LRU order, pins, and one load for many simultaneous misses."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from app.head_cache import HeadCache
from core.manifest import ItemSpec
from tests.fake_backend import fake_spec


class SizedHead:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def logits(self, hidden: object, mask: object) -> object:
        return None


def test_evicts_least_recently_used_by_bytes_but_never_pinned() -> None:
    loads: list[str] = []

    def loader(spec: ItemSpec, index: int) -> SizedHead:
        loads.append(spec.item_id)
        return SizedHead(40)

    cache = HeadCache(loader, capacity_bytes=100, pinned={"pinned"})
    specs = {name: fake_spec(name) for name in ("pinned", "a", "b", "c")}
    cache.get(specs["pinned"])
    cache.get(specs["a"])
    cache.get(specs["b"])  # 120 bytes > 100: "a" (least recent, not pinned) goes
    assert not cache.has_item(specs["a"]) and cache.has_item(specs["pinned"]) and cache.used_bytes == 80
    cache.get(specs["pinned"])
    cache.get(specs["c"])  # evicts "b", never "pinned"
    assert not cache.has_item(specs["b"]) and cache.has_item(specs["pinned"])
    assert loads == ["pinned", "a", "b", "c"]
    # a new version is a different key: both may be resident
    cache.get(fake_spec("c", version="v2"))
    assert ("c", "v2", 0) in cache


def test_simultaneous_misses_load_once() -> None:
    loads = []
    lock = threading.Lock()

    def slow_loader(spec: ItemSpec, index: int) -> SizedHead:
        with lock:
            loads.append(spec.key)
        time.sleep(0.2)
        return SizedHead(1)

    cache = HeadCache(slow_loader, capacity_bytes=10)
    spec = fake_spec("busy")
    with ThreadPoolExecutor(8) as pool:
        heads = list(pool.map(lambda _: cache.get(spec), range(8)))
    assert loads == [spec.key] and all(head is heads[0] for head in heads)
