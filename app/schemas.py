"""Request and response bodies (they become the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

REVIEW_REASONS = "why needs_review is true: low_confidence (below the item's threshold), unknown_words (most of " \
                 "the answer is outside the backbone's vocabulary, e.g. a script it cannot read), " \
                 "neighbours_disagree (explain only: most of the k most alike human-scored answers got another score)"
EXPLAIN = "also return the evidence for each score: the item's most alike human-scored training answers " \
          "(where the item was exported with its evidence index; see GET /items `evidence`)"
ReviewReason = Literal["low_confidence", "unknown_words", "neighbours_disagree"]


def _absent(value: object) -> bool:
    return value is None

MEMBERS = "what scored it, each as source@version: the item's adapter, an ensemble's other backbones' " \
          "adapters and its lexical (word and character n-gram) member"


class ScoreRequest(BaseModel):
    """Exactly one of `answer` (one text) or `answers` (several texts for the same item)."""

    model_config = ConfigDict(extra="forbid")
    answer: StrictStr | None = None
    answers: list[StrictStr] | None = None
    explain: StrictBool = Field(False, description=EXPLAIN)

    @model_validator(mode="after")
    def one_of(self) -> ScoreRequest:
        if (self.answer is None) == (self.answers is None):
            raise ValueError("give exactly one of 'answer' or 'answers'")
        return self


class EvidenceAnswer(BaseModel):
    id: str = Field(description="the answer's id in the item's training data (ASAP: its Id)")
    score: int = Field(description="the score a human gave it")
    similarity: float = Field(description="cosine similarity in the item's own features, -1 to 1")
    text: str | None = Field(None, exclude_if=_absent,
                             description="only where the item was exported with --evidence-texts")


class Evidence(BaseModel):
    member: str = Field(description="whose features were compared: the item's first adapter (an ensemble's "
                                    "members other than it are not searched)")
    neighbours: list[EvidenceAnswer] = Field(description="the k most alike training answers, most alike first")
    neighbour_score: int = Field(description="the score most of the neighbours got (ties: the more alike)")
    agrees: bool = Field(description="neighbour_score equals the served score")
    nearest_by_score: list[EvidenceAnswer] = Field(
        description="for each score point, its most alike training answer (how far the answer is from each)")


class ScoreResult(BaseModel):
    item_id: str
    score: int
    probabilities: list[float] = Field(description="one per score point, low to high")
    confidence: float = Field(description="probability of the returned score")
    needs_review: bool = Field(description="a teacher should look at this score (see review_reasons)")
    adapter_version: str
    truncated: bool = Field(description="the answer was longer than the model's window and was cut")
    review_reasons: list[ReviewReason] = Field([], description=REVIEW_REASONS)
    members: list[str] = Field([], description=MEMBERS)
    evidence: Evidence | None = Field(None, exclude_if=_absent, description="with explain only")


class ScoreResults(BaseModel):
    results: list[ScoreResult]


class BatchRow(BaseModel):
    id: StrictStr | StrictInt  # strict: `true` or 1.0 would come back as 1, no longer the client's id
    item_id: Any = None  # checked per row: a bad row gets its own error, the others are scored
    answer: Any = None


class BatchRequest(BaseModel):
    answers: list[BatchRow]
    explain: StrictBool = Field(False, description=EXPLAIN)


class BatchRowResult(BaseModel):
    id: StrictStr | StrictInt
    item_id: str | None = None
    score: int | None = None
    probabilities: list[float] | None = None
    confidence: float | None = None
    needs_review: bool | None = None
    adapter_version: str | None = None
    truncated: bool | None = None
    review_reasons: list[str] | None = None
    members: list[str] | None = None
    evidence: Evidence | None = Field(None, exclude_if=_absent, description="with explain only")
    error: str | None = None
    error_type: str | None = None


class BatchResponse(BaseModel):
    results: list[BatchRowResult]


class JobAccepted(BaseModel):
    job_id: str


class JobStatus(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed", "cancelled", "deleted"] = Field(
        description="cancelled: stopped by DELETE before it finished; deleted: its results were dropped by DELETE")
    total: int
    done: int
    created: float | None = Field(None, description="Unix time the job was accepted")
    finished: float | None = Field(None, description="Unix time it ended; results are kept SCORER_JOB_TTL_S after")
    results: list[BatchRowResult] | None = None
    error: str | None = None
    restarts: int = Field(0, description="times the job was scored again from the start after its runner stopped "
                                         "(`done` only grows otherwise)")


class ItemInfo(BaseModel):
    item_id: str
    status: Literal["ready", "preparing"] = Field(
        "ready", description="preparing: its backbone is still being exported; it is served once that finishes")
    score_range: tuple[int, int]
    adapter_version: str
    head_format: str
    members: list[str] = Field([], description=MEMBERS)
    combine: str = Field("single", description="single, or mean_probabilities: the members' weighted mean")
    cached: bool
    review_threshold: float
    evaluation: dict[str, Any]
    replaced: str | None = Field(None, description="reload and rollback answers: the version this switch replaced")
    evidence: dict[str, Any] | None = Field(
        None, description="its evidence index (explain): answers, k, texts, member; null where it was exported "
                          "without its training answers")


class ErrorBody(BaseModel):
    error: str
    error_type: str
