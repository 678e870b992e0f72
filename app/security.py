"""API keys: only SHA-256 digests are configured; comparison is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from app.errors import Forbidden, Unauthorized


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _matches(digest: str, allowed: list[str]) -> bool:
    found = False
    for candidate in allowed:  # no early exit: timing does not tell which entry matched
        found |= hmac.compare_digest(digest, candidate.lower())
    return found


def check_key(authorization: str | None, scoring: list[str], admin: list[str], need_admin: bool) -> None:
    if not scoring and not admin:
        return  # no keys configured: the server only binds to loopback (checked at start-up)
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("missing API key (Authorization: Bearer <key>)")
    digest = key_digest(authorization.removeprefix("Bearer ").strip())
    is_admin = _matches(digest, admin)
    if need_admin:
        if not is_admin:
            raise (Forbidden("this key may not use admin endpoints") if _matches(digest, scoring)
                   else Unauthorized("invalid API key"))
        return
    if not (is_admin or _matches(digest, scoring)):
        raise Unauthorized("invalid API key")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
