"""The narrow inference interface the HTTP layer sees, and what it returns per answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.errors import ScoringError
from app.registry import ItemSpec


@dataclass(frozen=True)
class Scored:
    item_id: str
    score: int
    probabilities: list[float]
    confidence: float
    needs_review: bool
    adapter_version: str
    truncated: bool


Outcome = Scored | ScoringError


class Backend(Protocol):
    """Blocking calls; the service runs them in its inference thread, never on the event loop."""

    ready: bool

    def items(self) -> dict[str, ItemSpec]: ...

    def is_cached(self, spec: ItemSpec) -> bool: ...

    def score(self, rows: list[tuple[str, str]]) -> list[Outcome]:
        """(item id, answer) per row -> one outcome per row, in order; a bad row never fails the others."""
        ...

    def warm_up(self) -> None: ...

    def reload(self, item_id: str, rollback: bool = False) -> ItemSpec:
        """Swap in the item's newest (or, with rollback, previous) exported version after verifying it."""
        ...

    def activate(self, item_id: str, version: str) -> ItemSpec:
        """Swap in exactly this exported version (current or from history) after verifying it."""
        ...
