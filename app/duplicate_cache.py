"""Identical (item, adapter version, normalised answer) -> the earlier result. Many short answers repeat.

Keys are SHA-256 digests: the cache never holds answer text. Redis when configured (shared by replicas,
with a TTL); an in-process LRU otherwise. A Redis failure bypasses the cache, never the request."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import asdict
from typing import Any, Protocol

from app import metrics
from app.backend import Scored

log = logging.getLogger("scorer.cache")


def normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def cache_key(item_id: str, version: str, text: str) -> str:
    digest = hashlib.sha256(normalise(text).encode()).hexdigest()
    return f"scorer:dup:{item_id}:{version}:{digest}"


class DuplicateCache(Protocol):
    async def get_many(self, keys: list[str]) -> list[Scored | None]: ...

    async def put_many(self, entries: dict[str, Scored]) -> None: ...


class MemoryDuplicateCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, Scored] = OrderedDict()

    async def get_many(self, keys: list[str]) -> list[Scored | None]:
        found: list[Scored | None] = []
        for key in keys:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            found.append(value)
        return found

    async def put_many(self, entries: dict[str, Scored]) -> None:
        if self.capacity <= 0:
            return
        for key, value in entries.items():
            self._entries[key] = value
            self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


class RedisDuplicateCache:
    def __init__(self, client: Any, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._warned = False

    def _failed(self, exc: Exception) -> None:
        metrics.REDIS_ERRORS.inc()
        metrics.REDIS_UP.set(0)
        if not self._warned:  # one line per outage, not one per request
            log.warning("redis unavailable, duplicate cache bypassed: %s", type(exc).__name__)
            self._warned = True

    def _succeeded(self) -> None:
        metrics.REDIS_UP.set(1)
        if self._warned:
            log.warning("redis reachable again, duplicate cache back on")
            self._warned = False

    async def get_many(self, keys: list[str]) -> list[Scored | None]:
        try:
            values = await self.client.mget(keys)
        except Exception as exc:
            self._failed(exc)
            return [None] * len(keys)
        self._succeeded()
        return [Scored(**json.loads(value)) if value else None for value in values]

    async def put_many(self, entries: dict[str, Scored]) -> None:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value in entries.items():
                    pipe.set(key, json.dumps(asdict(value)), ex=self.ttl_s)
                await pipe.execute()
        except Exception as exc:
            self._failed(exc)
