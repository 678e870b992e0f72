"""Domain errors and the one table that maps them to HTTP status codes."""

from __future__ import annotations


class ScoringError(Exception):
    error_type = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(ScoringError):
    error_type = "validation"


class NoScorableContent(ValidationFailed):
    """Nothing of the answer reaches the model: only control, zero-width, combining or space characters."""

    error_type = "no_scorable_content"


class UnknownItem(ScoringError):
    error_type = "unknown_item"


class ItemUnavailable(ScoringError):
    """The item is known but its head cannot be loaded (missing or corrupt file)."""

    error_type = "item_unavailable"


class Overloaded(ScoringError):
    error_type = "overloaded"


class QuotaExceeded(Overloaded):
    """This key already has as many job rows waiting as it may; clears as its jobs finish."""

    error_type = "quota_exceeded"


class RequestTimeout(ScoringError):
    """The request body did not arrive within the body timeout (a slow or stalled client)."""

    error_type = "request_timeout"


class PayloadTooLarge(ScoringError):
    error_type = "payload_too_large"


class NotReady(ScoringError):
    error_type = "not_ready"


class Unauthorized(ScoringError):
    error_type = "unauthorized"


class Forbidden(ScoringError):
    error_type = "forbidden"


class JobNotFound(ScoringError):
    error_type = "job_not_found"


class JobStoreUnavailable(ScoringError):
    """Redis (the shared job store) cannot be reached: retry later rather than read it as a missing job."""

    error_type = "job_store_unavailable"


ERROR_STATUS: dict[type[ScoringError], int] = {
    ValidationFailed: 422,
    UnknownItem: 404,
    JobNotFound: 404,
    JobStoreUnavailable: 503,
    ItemUnavailable: 503,
    Overloaded: 429,
    PayloadTooLarge: 413,
    RequestTimeout: 408,
    NotReady: 503,
    Unauthorized: 401,
    Forbidden: 403,
    ScoringError: 500,
}


# Errors the framework raises itself (unknown route, wrong method, unreadable body): status -> error_type.
FRAMEWORK_ERROR_TYPES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


class FrameworkError(ScoringError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = FRAMEWORK_ERROR_TYPES.get(status, "http")


RETRY_AFTER_S = {429: 1, 503: 1}  # statuses a client should retry, and after how long


def status_of(error: ScoringError) -> int:
    if isinstance(error, FrameworkError):
        return error.status
    for cls in type(error).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


def headers_of(error: ScoringError) -> dict[str, str] | None:
    retry = RETRY_AFTER_S.get(status_of(error))
    return {"Retry-After": str(retry)} if retry is not None else None


def error_body(error: ScoringError) -> dict[str, str]:
    return {"error": error.message, "error_type": error.error_type}
