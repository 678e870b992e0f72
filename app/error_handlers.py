"""Framework errors (FastAPI's validation, Starlette's HTTP errors) and our own, answered in the one shape
{"error", "error_type"} with the status and headers of the error table (app/errors.py)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import FrameworkError, ScoringError, ValidationFailed, error_body, headers_of, status_of


def error_response(error: ScoringError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=status_of(error), headers=headers_of(error))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ScoringError)
    async def scoring_error(_: Request, error: ScoringError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid")
        return error_response(ValidationFailed(message))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(FrameworkError(error.status_code, str(error.detail)))
