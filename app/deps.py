"""Small dependencies that hand lifespan-created objects and auth checks to the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from app.backend import Backend
from app.jobs import JobRunner
from app.scoring import ScoringService
from app.security import Caller, check_key
from app.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_scoring(request: Request) -> ScoringService:
    service: ScoringService = request.app.state.scoring
    return service


def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def get_jobs(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.jobs
    return runner


def require_key(settings: Annotated[Settings, Depends(get_settings_dep)],
                authorization: Annotated[str | None, Header()] = None) -> Caller:
    return check_key(authorization, settings.api_keys_sha256, settings.admin_keys_sha256, need_admin=False)


def require_admin(settings: Annotated[Settings, Depends(get_settings_dep)],
                  authorization: Annotated[str | None, Header()] = None) -> Caller:
    return check_key(authorization, settings.api_keys_sha256, settings.admin_keys_sha256, need_admin=True)


def served_item(request: Request, item_id: Annotated[str, Path(max_length=200)]) -> str:
    """A path's item id, checked once per request: 404 unknown_item unless this deployment serves it."""
    return get_scoring(request).known_item(item_id)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ScoringDep = Annotated[ScoringService, Depends(get_scoring)]
BackendDep = Annotated[Backend, Depends(get_backend)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
CallerDep = Annotated[Caller, Depends(require_key)]
ServedItemDep = Annotated[str, Depends(served_item)]
