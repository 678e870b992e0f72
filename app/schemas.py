"""Request and response bodies (they become the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

REVIEW_REASONS = "why needs_review is true: low_confidence (below the item's threshold), unknown_words (most of " \
                 "the answer is outside the backbone's vocabulary, e.g. a script it cannot read)"
MEMBERS = "what scored it, each as source@version: the item's adapter, an ensemble's other backbones' " \
          "adapters and its lexical (word and character n-gram) member"


class ScoreRequest(BaseModel):
    """Exactly one of `answer` (one text) or `answers` (several texts for the same item)."""

    model_config = ConfigDict(extra="forbid")
    answer: StrictStr | None = None
    answers: list[StrictStr] | None = None

    @model_validator(mode="after")
    def one_of(self) -> ScoreRequest:
        if (self.answer is None) == (self.answers is None):
            raise ValueError("give exactly one of 'answer' or 'answers'")
        return self


class ScoreResult(BaseModel):
    item_id: str
    score: int
    probabilities: list[float] = Field(description="one per score point, low to high")
    confidence: float = Field(description="probability of the returned score")
    needs_review: bool = Field(description="a teacher should look at this score (see review_reasons)")
    adapter_version: str
    truncated: bool = Field(description="the answer was longer than the model's window and was cut")
    review_reasons: list[Literal["low_confidence", "unknown_words"]] = Field([], description=REVIEW_REASONS)
    members: list[str] = Field([], description=MEMBERS)


class ScoreResults(BaseModel):
    results: list[ScoreResult]


class BatchRow(BaseModel):
    id: StrictStr | StrictInt  # strict: `true` or 1.0 would come back as 1, no longer the client's id
    item_id: Any = None  # checked per row: a bad row gets its own error, the others are scored
    answer: Any = None


class BatchRequest(BaseModel):
    answers: list[BatchRow]


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


class ErrorBody(BaseModel):
    error: str
    error_type: str
