"""HTTP endpoints. Thin: validation of shapes here, everything else in plain modules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse

from app.backend import Outcome, Scored
from app.deps import (
    BackendDep,
    CallerDep,
    JobsDep,
    ScoringDep,
    ServedItemDep,
    SettingsDep,
    require_admin,
    require_key,
)
from app.errors import NotReady, PayloadTooLarge, ScoringError, UnknownItem, error_body
from app.schemas import (
    BatchRequest,
    BatchResponse,
    BatchRowResult,
    ErrorBody,
    ItemInfo,
    JobAccepted,
    JobStatus,
    ScoreRequest,
    ScoreResult,
    ScoreResults,
)
from app.version_sync import VersionSync
from core.decoding import DEFAULT_REVIEW_THRESHOLD
from core.item_ids import ITEM_ID_RULE, is_item_id
from core.manifest import ItemSpec

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody}
                                           for code in (401, 404, 408, 413, 422, 429, 503)}
ItemId = Path(max_length=200, description=f"item slug: {ITEM_ID_RULE}")
scoring_router = APIRouter(dependencies=[Depends(require_key)], responses=ERRORS)
admin_router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], responses=ERRORS)
ops_router = APIRouter()


def _check_ready(request: Request) -> None:
    # Not `draining`: while draining, readiness is 503 so no new traffic is routed here, but a request that
    # still arrives (keep-alive, the balancer's delay) is served, not refused.
    if not request.app.state.backend.ready:
        raise NotReady("service is starting")


def _result(outcome: Outcome) -> ScoreResult:
    if isinstance(outcome, ScoringError):
        raise outcome
    assert isinstance(outcome, Scored)
    return ScoreResult(**outcome.__dict__)


@scoring_router.post("/score/{item_id}", response_model=ScoreResult | ScoreResults)
async def score_item(request: Request, response: Response, body: ScoreRequest, scoring: ScoringDep,
                     item_id: ServedItemDep) -> ScoreResult | ScoreResults:
    """Score one answer (`answer`) or several answers to the same item (`answers`, results in order)."""
    _check_ready(request)
    texts = [body.answer] if body.answer is not None else list(body.answers or [])
    scoring.check_request_size(len(texts))
    started = time.perf_counter()
    outcomes = await scoring.score_answers(item_id, texts, body.explain)
    response.headers["x-inference-time"] = f"{(time.perf_counter() - started) * 1000:.2f}ms"
    results = [_result(outcome) for outcome in outcomes]
    return results[0] if body.answer is not None else ScoreResults(results=results)


@scoring_router.post("/batch", response_model=BatchResponse)
async def batch(request: Request, response: Response, body: BatchRequest, scoring: ScoringDep) -> BatchResponse:
    """Score rows for many items together; a bad row carries its own error and the rest are scored."""
    _check_ready(request)
    scoring.check_request_size(len(body.answers))
    started = time.perf_counter()
    results = await scoring.score_rows([row.model_dump() for row in body.answers], explain=body.explain)
    response.headers["x-inference-time"] = f"{(time.perf_counter() - started) * 1000:.2f}ms"
    return BatchResponse(results=[BatchRowResult(**result) for result in results])


@scoring_router.post("/jobs", status_code=202, response_model=JobAccepted)
async def create_job(request: Request, body: BatchRequest, jobs: JobsDep, settings: SettingsDep,
                     caller: CallerDep) -> JobAccepted:
    """Accept a large set of rows for background scoring; poll GET /jobs/{job_id}.

    Job rows are scored after every waiting /score and /batch request. A key may have at most
    SCORER_MAX_JOB_ROWS_PER_KEY unscored rows in unfinished jobs (429 quota_exceeded beyond)."""
    _check_ready(request)
    if len(body.answers) > settings.max_answers_per_job:
        raise PayloadTooLarge(f"at most {settings.max_answers_per_job} rows per job")
    job_id = await jobs.create([row.model_dump() for row in body.answers], caller, body.explain)
    return JobAccepted(job_id=job_id)


@scoring_router.get("/jobs/{job_id}", response_model=JobStatus)
async def get_job(job_id: str, jobs: JobsDep, caller: CallerDep) -> JobStatus:
    """Status, progress, and results once done (only for the key that created the job, or an admin key)."""
    return JobStatus(**(await jobs.get(job_id[:64], caller)))


@scoring_router.delete("/jobs/{job_id}", response_model=JobStatus)
async def delete_job(job_id: str, jobs: JobsDep, caller: CallerDep) -> JobStatus:
    """Cancel an unfinished job (status `cancelled`), or drop a finished job's results (status `deleted`)."""
    return JobStatus(**(await jobs.cancel(job_id[:64], caller)))


def _item_info(backend: Any, item_id: str, replaced: str | None = None) -> ItemInfo:
    spec = backend.items()[item_id]
    return ItemInfo(item_id=item_id, score_range=(spec.labels[0], spec.labels[-1]),
                    adapter_version=spec.version, head_format=spec.head_format,
                    members=spec.member_names,
                    combine=spec.combine, cached=backend.is_cached(spec), review_threshold=spec.review_threshold,
                    evaluation=spec.model_card, replaced=replaced,
                    evidence=spec.evidence.describe() if spec.evidence is not None else None)


@scoring_router.get("/items", response_model=list[ItemInfo])
async def list_items(backend: BackendDep) -> list[ItemInfo]:
    """Every servable item with its score range, version, cache state and evaluation figures; then the items
    still being prepared (status `preparing`: their backbone's export has not finished)."""
    ready = [_item_info(backend, item_id) for item_id in sorted(backend.items())]
    preparing = [ItemInfo(item_id=item_id, status="preparing", score_range=(entry["labels"][0], entry["labels"][-1]),
                          adapter_version=str(entry["version"]), head_format="pending", cached=False,
                          review_threshold=DEFAULT_REVIEW_THRESHOLD, evaluation={})
                 for item_id, entry in sorted(backend.pending().items())]
    return ready + preparing


@scoring_router.get("/items/{item_id}", response_model=ItemInfo)
async def get_item(backend: BackendDep, item_id: ServedItemDep) -> ItemInfo:
    """One item's score range, version, cache state and evaluation figures."""
    return _item_info(backend, item_id)


@ops_router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "live"}


@ops_router.get("/health/ready", responses={503: {"model": ErrorBody}})
async def ready(request: Request) -> JSONResponse:
    """Trunk loaded and warmed, and not draining."""
    if request.app.state.backend.ready and not request.app.state.draining:
        return JSONResponse({"status": "ready"})
    return JSONResponse(error_body(NotReady("not ready")), status_code=503)


async def _announce(request: Request, spec: ItemSpec) -> None:
    """Redis mode: the other replicas switch to the same version (app/version_sync.py)."""
    versions: VersionSync | None = request.app.state.version_sync
    if versions is not None:
        await versions.announce(spec.item_id, spec.version)


@admin_router.post("/items/{item_id}/reload", response_model=ItemInfo)
async def reload_item(request: Request, backend: BackendDep, item_id: str = ItemId) -> ItemInfo:
    """Pick up a newly exported version without restart; the old one answers until the new one is verified.

    With Redis, every other replica switches to the same version within about a second."""
    if not is_item_id(item_id):  # may be new to this process: only the id rule applies
        raise UnknownItem("unknown item")
    before = backend.items().get(item_id)
    await _announce(request, await asyncio.to_thread(backend.reload, item_id))
    return _item_info(backend, item_id, replaced=before.version if before is not None else None)


@admin_router.post("/items/{item_id}/rollback", response_model=ItemInfo)
async def rollback_item(request: Request, backend: BackendDep, item_id: ServedItemDep) -> ItemInfo:
    """Return the item to its previous served configuration (on every replica, with Redis): the newest earlier
    version of the same kind (ensemble or single head), else the newest earlier one; `members`, `combine` and
    `replaced` say what serves now and what it replaced."""
    before = backend.items()[item_id]
    await _announce(request, await asyncio.to_thread(backend.rollback, item_id))
    return _item_info(backend, item_id, replaced=before.version)
