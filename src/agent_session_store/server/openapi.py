"""A hand-kept OpenAPI 3.1 description of the JSON API (Starlette does not generate one);
tests check that every API route appears here."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = ["SPEC", "openapi"]


def _q(name: str, kind: str = "string", desc: str = "", *, many: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if many:
        schema = {"type": "array", "items": {"type": kind}}
    return {"name": name, "in": "query", "schema": schema, "description": desc}


_SID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "percent-encoded; may contain any character",
}
_ERR = {
    "description": "an error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_OK = {"description": "OK"}


def _op(summary: str, params: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": params or [],
        "responses": {"200": _OK, "default": _ERR},
        **extra,
    }


_EVENT_FILTERS = [_q("run_id"), _q("type"), _q("since", desc="ISO-8601 with zone; timestamp >=")]
_SUMMARY = [_q("session_id"), _q("agent_id"), _q("provider"), _q("since"), _q("until")]

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "agent-session-store", "version": "1"},
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}, {}],
    "paths": {
        "/api/sessions": {
            "get": _op(
                "Search sessions (contract 7.2), cursor paging",
                [
                    _q("agent_id"),
                    _q("status", many=True),
                    _q("tag", desc="repeat: every tag must be present", many=True),
                    _q("created_after"),
                    _q("created_before"),
                    _q("updated_after"),
                    _q("updated_before"),
                    _q("include_deleted", "boolean"),
                    _q("order_by", desc="updated_at_desc | created_at_asc | created_at_desc"),
                    _q("limit", "integer", "1-1000, default 50"),
                    _q("cursor"),
                    _q("include_total", "boolean"),
                ],
            )
        },
        "/api/sessions/{session_id}": {
            "get": _op("One session with its stats (7.3)", [_SID]),
            "put": _op("Save a session (write; needs the token)", [_SID]),
        },
        "/api/sessions/{session_id}/stats": {"get": _op("Session stats (7.3)", [_SID])},
        "/api/sessions/{session_id}/runs": {
            "get": _op("Runs of a session (3.6)", [_SID, _q("status"), _q("limit", "integer")])
        },
        "/api/sessions/{session_id}/events": {
            "get": _op(
                "Events (3.9): filters, order, paging, long-poll",
                [
                    _SID,
                    *_EVENT_FILTERS,
                    _q("after", "integer"),
                    _q("before", "integer"),
                    _q("limit", "integer", "1-1000, default 100"),
                    _q("order", desc="asc | desc"),
                    _q("wait_timeout_ms", "integer", "long-poll, at most 30000"),
                ],
            ),
            "post": _op(
                "Append events (write): {events, expected_sequence?}; 409 sequence_conflict", [_SID]
            ),
        },
        "/api/sessions/{session_id}/events/stream": {
            "get": _op(
                "Server-Sent Events; id = sequence number; resumes after Last-Event-ID "
                "(header) or ?after=",
                [_SID, *_EVENT_FILTERS, _q("after", "integer")],
            )
        },
        "/api/sessions/{session_id}/visible": {
            "get": _op("Visible history after rewinds (2.3)", [_SID, _q("limit", "integer")])
        },
        "/api/runs/{run_id}": {
            "get": _op(
                "One run",
                [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            ),
            "put": _op(
                "Save a run (write)",
                [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            ),
        },
        "/api/events": {
            "get": _op(
                "Search events across sessions (7.7)",
                [
                    _q("session_id", many=True),
                    _q("run_id", many=True),
                    _q("type", many=True),
                    _q("provider", many=True),
                    _q("since"),
                    _q("until"),
                    _q("correlation_id"),
                    _q("order_by"),
                    _q("limit", "integer"),
                    _q("cursor"),
                ],
            )
        },
        "/api/usage": {"get": _op("Usage summary (7.5)", _SUMMARY)},
        "/api/cost": {"get": _op("Cost summary (7.6)", _SUMMARY)},
        "/api/artifacts": {
            "get": _op(
                "Artifact keys by prefix, paged",
                [_q("prefix"), _q("limit", "integer"), _q("cursor")],
            ),
            "put": _op("Store an artifact (write); body = the bytes", [_q("key")]),
        },
        "/api/artifacts/stat": {"get": _op("Size, SHA-256, modification time", [_q("key")])},
        "/api/artifacts/download": {
            "get": _op("The bytes, streamed; honours one Range", [_q("key")])
        },
        "/api/openapi.json": {"get": _op("This document")},
    },
}


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(SPEC)
