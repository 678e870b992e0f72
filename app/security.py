"""API keys: only SHA-256 digests are configured; comparison is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from app.errors import Forbidden, Unauthorized


@dataclass(frozen=True)
class Caller:
    """Who sent a request: `owner` names the key (a digest of its digest: a job record never holds a value
    that would let anyone present the key); admin keys may read and cancel every job."""

    owner: str
    admin: bool


ANONYMOUS = Caller("anonymous", admin=True)  # no keys configured: loopback only, one party


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _matches(digest: str, allowed: list[str]) -> bool:
    found = False
    for candidate in allowed:  # no early exit: timing does not tell which entry matched
        found |= hmac.compare_digest(digest, candidate.lower())
    return found


def check_key(authorization: str | None, scoring: list[str], admin: list[str], need_admin: bool) -> Caller:
    if not scoring and not admin:
        return ANONYMOUS  # no keys configured: the server only binds to loopback (checked at start-up)
    scheme, _, key = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():  # the scheme is case-insensitive (RFC 9110 §11.1)
        raise Unauthorized("missing API key (Authorization: Bearer <key>)")
    digest = key_digest(key.strip())
    is_admin = _matches(digest, admin)
    if need_admin:
        if not is_admin:
            raise (Forbidden("this key may not use admin endpoints") if _matches(digest, scoring)
                   else Unauthorized("invalid API key"))
    elif not (is_admin or _matches(digest, scoring)):
        raise Unauthorized("invalid API key")
    return Caller(hashlib.sha256(f"job-owner:{digest}".encode()).hexdigest()[:32], is_admin)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
