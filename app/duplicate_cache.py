"""Identical (item, adapter version, token ids) -> the earlier result. Many short answers repeat.

The key is a digest of the ids the item's own tokenizer made of the answer (core/answer_tokens.py), so two
answers share a score only when the model could not tell them apart. Keys are SHA-256 digests: the cache
never holds answer text. Redis when configured (shared by replicas, with a TTL); an in-process LRU
otherwise. A Redis failure bypasses the cache, never the request, and opens a circuit breaker: while it is
open no request waits on Redis at all; after `breaker_s` one request probes it again."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import asdict
from typing import Any, Protocol

from app import metrics
from app.backend import Scored
from app.redis_clients import Breaker

log = logging.getLogger("scorer.cache")
KEY_SCHEME = "t1"  # bump when the digest changes: old entries then simply stop matching


def cache_key(item_id: str, version: str, token_digest: str) -> str:
    return f"scorer:dup:{KEY_SCHEME}:{item_id}:{version}:{token_digest}"


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
    def __init__(self, client: Any, ttl_s: int, breaker_s: float = 5.0) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.breaker_s = breaker_s
        self.breaker = Breaker(breaker_s)

    def _allowed(self) -> bool:
        return self.breaker.allowed()

    def _failed(self, exc: Exception) -> None:
        metrics.REDIS_ERRORS.inc()
        metrics.REDIS_UP.set(0)
        if self.breaker.failed():
            log.warning("redis unavailable, duplicate cache bypassed for %.0f s at a time: %s", self.breaker_s,
                        type(exc).__name__)

    def _succeeded(self) -> None:
        metrics.REDIS_UP.set(1)
        if self.breaker.succeeded():
            log.warning("redis reachable again, duplicate cache back on")

    async def ping(self) -> None:
        """At start-up: scorer_redis_up tells the truth before the first request."""
        try:
            await self.client.ping()
        except Exception as exc:
            self._failed(exc)
        else:
            self._succeeded()

    async def get_many(self, keys: list[str]) -> list[Scored | None]:
        if not self._allowed():
            return [None] * len(keys)
        try:
            values = await self.client.mget(keys)
        except Exception as exc:
            self._failed(exc)
            return [None] * len(keys)
        self._succeeded()
        return [Scored(**json.loads(value)) if value else None for value in values]

    async def put_many(self, entries: dict[str, Scored]) -> None:
        if not self._allowed():
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value in entries.items():
                    pipe.set(key, json.dumps(asdict(value)), ex=self.ttl_s)
                await pipe.execute()
        except Exception as exc:
            self._failed(exc)
        else:
            self._succeeded()
