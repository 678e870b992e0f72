"""The item-id rule: a slug, so ids are safe in URLs, file paths and metric labels."""

from __future__ import annotations

import re

ITEM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ITEM_ID_RULE = "[a-z0-9][a-z0-9_-]{0,63}"


def is_item_id(value: object) -> bool:
    return isinstance(value, str) and ITEM_ID.match(value) is not None
