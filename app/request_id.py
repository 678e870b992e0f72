"""X-Request-ID: the client's id echoed back on every answer (so each answer can be matched to its
request, and lost or duplicated answers found), or a fresh one. Only a safe, bounded shape is echoed."""

from __future__ import annotations

import re
import uuid

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id(given: str | None) -> str:
    return given if given is not None and REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
