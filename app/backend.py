"""The narrow inference interface the HTTP layer sees, and what it returns per answer."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from app.errors import ScoringError
from core.answer_tokens import EncodedAnswer
from core.manifest import ItemSpec

# Answers whose readable tokens are at least this share unknown to the backbone's vocabulary (an answer in
# a script the vocabulary lacks) are flagged for review: the model saw mostly `<unk>`, its score means little.
UNKNOWN_SHARE_FOR_REVIEW = 0.5


@dataclass  # not frozen: a frozen dataclass sets each field through object.__setattr__ (1.2 vs 0.5 us a row)
class Scored:
    item_id: str
    score: int
    probabilities: list[float]
    confidence: float
    needs_review: bool
    adapter_version: str
    truncated: bool
    review_reasons: list[str] = field(default_factory=list)  # low_confidence, unknown_words, neighbours_disagree
    members: list[str] = field(default_factory=list)  # what scored it: "asap-01@v1", "asap-01-e5@v1", ...
    evidence: dict[str, Any] | None = None  # only where asked for (explain) and the item has an evidence index


class AnswerRow(NamedTuple):
    """One answer to score: a served item's id and the answer's text (checked, not yet tokenized)."""

    item_id: str
    text: str


@dataclass(frozen=True)
class PreparedRow:
    """One answer after its item's tokenizers: all the scorer and the duplicate cache need of it.

    `encoded` is what the item's first trunk reads; an ensemble item also has its other trunks' tokens, and the
    text itself when a member reads the text. Truncation and unknown words are judged on every trunk's tokens."""

    item_id: str
    encoded: EncodedAnswer
    others: Mapping[str, EncodedAnswer] = field(default_factory=dict)  # backbone -> tokens
    text: str | None = None  # only for items with a lexical member; never logged
    # The version the row was prepared for: it scores the row even if a reload swaps the item meanwhile (its
    # heads stay loadable: a switch keeps the old version's files), so a version switch fails no request.
    spec: ItemSpec | None = field(default=None, compare=False)
    # Asked for evidence (explain): the first member's pooled features are kept and searched in the item's index.
    explain: bool = field(default=False, compare=False)

    @property
    def unknown_share(self) -> float:
        """The largest share of unknown tokens any member's trunk read: an ensemble score is only as sound as
        its members' inputs (Greek reads as known letters to MiniLM and as unknown to E5's Latin vocabulary)."""
        if not self.others:
            return self.encoded.unknown_share
        return max([self.encoded.unknown_share, *(tokens.unknown_share for tokens in self.others.values())])

    @property
    def truncated(self) -> bool:
        """Cut short on some member's trunk."""
        return self.encoded.truncated or any(tokens.truncated for tokens in self.others.values())

    @property
    def digest(self) -> str:
        """The duplicate cache's key: equal only when every member would read the same input."""
        if not self.others and self.text is None:
            return self.encoded.digest
        parts = [self.encoded.digest, *(f"{name}:{self.others[name].digest}" for name in sorted(self.others)),
                 "" if self.text is None else self.text]
        return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()

    def tokens(self, backbone: str, first: str) -> EncodedAnswer:
        return self.encoded if backbone == first else self.others[backbone]


Outcome = Scored | ScoringError


class Backend(Protocol):
    """Blocking calls; the service runs them off the event loop, never on it."""

    ready: bool

    def items(self) -> dict[str, ItemSpec]: ...

    def is_cached(self, spec: ItemSpec) -> bool: ...

    def pending(self) -> dict[str, dict[str, Any]]:
        """Items not served yet because their backbone's export is still running: id -> backbone, version,
        labels."""
        ...

    def prepare(self, rows: list[AnswerRow]) -> list[PreparedRow | ScoringError]:
        """(item id, answer) per row -> its tokens, or the row's own error (unknown item, nothing readable)."""
        ...

    def score_prepared(self, rows: list[PreparedRow]) -> list[Outcome]:
        """One outcome per prepared row, in order; a bad row never fails the others."""
        ...

    def run_models(self, rows: list[PreparedRow]) -> Any:
        """score_prepared in two steps: the model runs (the batcher's inference thread) ..."""
        ...

    def finish(self, run: Any) -> list[Outcome]:
        """... then combining and decoding what `run_models` returned (its finishing thread, beside the next
        micro-batch's model runs). finish(run_models(rows)) == score_prepared(rows)."""
        ...

    def warm_up(self) -> None: ...

    def reload(self, item_id: str) -> ItemSpec:
        """Swap in the item's newest exported version after verifying it."""
        ...

    def rollback(self, item_id: str) -> ItemSpec:
        """Swap in the item's previous exported version after verifying it."""
        ...

    def activate(self, item_id: str, version: str) -> ItemSpec:
        """Swap in exactly this exported version (current or from history) after verifying it."""
        ...


def score_now(backend: Backend, rows: list[AnswerRow]) -> list[Outcome]:
    """prepare + score_prepared in one blocking call, one outcome per row (benchmarks, tests)."""
    prepared = backend.prepare(rows)
    scored = iter(backend.score_prepared([row for row in prepared if isinstance(row, PreparedRow)]))
    return [next(scored) if isinstance(row, PreparedRow) else row for row in prepared]
