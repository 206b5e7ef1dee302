"""HTTP status for every error code, and the codes only the HTTP layer raises."""

from __future__ import annotations

from ..errors import StoreError

__all__ = [
    "STATUS",
    "Forbidden",
    "NotSupported",
    "PayloadTooLarge",
    "RangeNotSatisfiable",
    "RouteNotFound",
    "Unauthorized",
    "status_for",
]


class NotSupported(StoreError):
    """The store does not implement an optional protocol this endpoint needs."""

    code = "not_supported"


class Unauthorized(StoreError):
    code = "unauthorized"


class Forbidden(StoreError):
    code = "forbidden"


class PayloadTooLarge(StoreError):
    code = "payload_too_large"


class RangeNotSatisfiable(StoreError):
    code = "range_not_satisfiable"


class RouteNotFound(StoreError):
    code = "not_found"


#: Store codes (contract 1) and HTTP-layer codes to statuses; anything else is a 500.
STATUS: dict[str, int] = {
    "validation_error": 400,
    "invalid_event_type": 400,
    "invalid_status": 400,
    "invalid_cursor": 400,
    "session_not_found": 404,
    "run_not_found": 404,
    "not_found": 404,
    "sequence_conflict": 409,
    "storage_connection_failed": 503,
    "migration_required": 503,
    "dependency_not_available": 501,
    "not_supported": 501,
    "unauthorized": 401,
    "forbidden": 403,
    "payload_too_large": 413,
    "range_not_satisfiable": 416,
    "method_not_allowed": 405,
}


def status_for(err: StoreError) -> int:
    return STATUS.get(err.code, 500)
