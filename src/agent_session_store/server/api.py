"""The JSON API (docs/server.md). Every value goes through the public ports; every failure
is ``{"code", "message"}`` with the status of ``errors.STATUS``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import ValidationError
from ..models import Event, Run, Session, iso, new_event_id, utcnow
from ..ports import ArtifactStore
from . import queries
from .context import Context
from .errors import NotSupported, PayloadTooLarge, RangeNotSatisfiable
from .jsonenc import FastJSONResponse, dumps, dumps_events
from .params import Params

__all__ = ["ctx", "parse_range", "read_body"]

MAX_PAGE = 1000
MAX_WAIT_MS = 30_000


def ctx(request: Request) -> Context:
    found: Context = request.app.state.ctx
    return found


def ok(value: Any, status: int = 200) -> JSONResponse:
    """Models and query results straight to JSON bytes (orjson), no intermediate dicts."""
    return FastJSONResponse(value, status_code=status)


def _limit(p: Params, default: int) -> int:
    value = p.integer("limit", minimum=1, maximum=MAX_PAGE, default=default)
    assert value is not None
    return value


# ---------------------------------------------------------------- sessions


async def list_sessions(request: Request) -> Response:
    c = ctx(request)
    p = Params(request.query_params)
    page = await queries.search_sessions(
        c.store,
        agent_id=p.text("agent_id"),
        status=p.texts("status"),
        tags=p.texts("tag"),
        created_after=p.when("created_after"),
        created_before=p.when("created_before"),
        updated_after=p.when("updated_after"),
        updated_before=p.when("updated_before"),
        include_deleted=p.boolean("include_deleted"),
        order_by=p.choice(
            "order_by", queries.SESSION_ORDERS, queries.default_session_order(c.store)
        ),
        limit=_limit(p, 50),
        cursor=p.text("cursor"),
        include_total=p.boolean("include_total"),
    )
    return ok({"items": page.items, "cursor": page.cursor, "total_count": page.total_count})


async def get_session(request: Request) -> Response:
    store = ctx(request).store
    sid = request.path_params["session_id"]
    # One after the other: under load the CPU is what runs out, and gather's two tasks cost
    # more of it than the second read's wait (an idle server answers ~0.1 ms later).
    session = await store.get_session(sid)
    stats = await queries.session_stats_value(store, sid)
    return ok({"session": session, "stats": stats})


async def get_stats(request: Request) -> Response:
    sid = request.path_params["session_id"]
    return ok(await queries.session_stats_value(ctx(request).store, sid))


async def list_runs(request: Request) -> Response:
    p = Params(request.query_params)
    runs = await ctx(request).store.list_runs(
        request.path_params["session_id"],
        status=p.text("status"),
        limit=p.integer("limit", minimum=1, maximum=MAX_PAGE),
    )
    return ok({"items": runs})


async def get_run(request: Request) -> Response:
    return ok(await ctx(request).store.get_run(request.path_params["run_id"]))


def _event_filters(p: Params) -> dict[str, Any]:
    return {"run_id": p.text("run_id"), "type": p.text("type"), "since": p.when("since")}


async def list_events(request: Request) -> Response:
    """Contract 3.9: every filter, order and long-poll; ``next`` says how to ask for more."""
    p = Params(request.query_params)
    order = p.choice("order", ("asc", "desc"), "asc")
    limit = _limit(p, 100)
    c = ctx(request)
    sid = request.path_params["session_id"]
    after, before = p.integer("after"), p.integer("before")
    wait_ms = p.integer("wait_timeout_ms", maximum=MAX_WAIT_MS)
    direction: Literal["asc", "desc"] = "desc" if order == "desc" else "asc"
    filters = _event_filters(p)
    if c.events_json is not None and not wait_ms:
        # The page as JSON from the store: decoding it into Events and encoding those again
        # was most of this endpoint's CPU (bench/server.py, issue 11).
        page = await c.events_json.get_events_json(
            sid, after=after, before=before, limit=limit, order=direction, **filters
        )
        if page is not None:
            nxt = _next(page.size, page.last_sequence, limit, order)
            return ok(b'{"items":' + page.items + b',"next":' + dumps(nxt) + b"}")
    events = await c.store.get_events(
        sid,
        after=after,
        before=before,
        limit=limit,
        wait_timeout_ms=wait_ms,
        order=direction,
        **filters,
    )
    last = events[-1].sequence_number if events else None
    return ok(dumps_events(events, next=_next(len(events), last, limit, order)))


def _next(count: int, last: int | None, limit: int, order: str) -> dict[str, int] | None:
    """How to ask for the page after a full one."""
    if count != limit:
        return None
    seq = last or 0
    return {"before": seq} if order == "desc" else {"after": seq}


async def visible_events(request: Request) -> Response:
    p = Params(request.query_params)
    events = await ctx(request).store.get_visible_events(
        request.path_params["session_id"], limit=p.integer("limit", minimum=1)
    )
    return ok({"items": events})


async def stream_events(request: Request) -> Response:
    """SSE; ``Last-Event-ID`` (a reconnecting browser) wins over ``?after=``."""
    p = Params(request.query_params)
    last_id = request.headers.get("last-event-id")
    if last_id is not None and last_id.strip():
        if not last_id.strip().isdigit():
            raise ValidationError(
                "Last-Event-ID must be a sequence number", details={"field": "Last-Event-ID"}
            )
        after = int(last_id.strip())
    else:
        after = p.integer("after", default=0) or 0
    c = ctx(request)
    sid = request.path_params["session_id"]
    filters = _event_filters(p)
    # Validate the filters once, the way the store does, before the stream starts.
    await c.store.get_events(sid, limit=1, after=after, **filters)
    response = c.hub.response(sid, after=after, **filters)
    return response  # type: ignore[return-value]


# ---------------------------------------------------------------- queries (7.5-7.7)


def _summary_filters(p: Params) -> dict[str, Any]:
    return {
        "session_id": p.text("session_id"),
        "agent_id": p.text("agent_id"),
        "provider": p.text("provider"),
        "since": p.when("since"),
        "until": p.when("until"),
    }


async def usage(request: Request) -> Response:
    return ok(
        await queries.usage_summary(
            ctx(request).store, **_summary_filters(Params(request.query_params))
        )
    )


async def cost(request: Request) -> Response:
    return ok(
        await queries.cost_summary(
            ctx(request).store, **_summary_filters(Params(request.query_params))
        )
    )


async def search_events(request: Request) -> Response:
    p = Params(request.query_params)
    page = await queries.search_events(
        ctx(request).store,
        session_ids=p.texts("session_id"),
        run_ids=p.texts("run_id"),
        types=p.texts("type"),
        providers=p.texts("provider"),
        since=p.when("since"),
        until=p.when("until"),
        correlation_id=p.text("correlation_id"),
        order_by=p.choice("order_by", queries.EVENT_ORDERS, "timestamp_asc"),
        limit=_limit(p, 100),
        cursor=p.text("cursor"),
    )
    return ok({"items": page.items, "cursor": page.cursor})


# ---------------------------------------------------------------- artifacts


def _artifacts(request: Request) -> ArtifactStore:
    store = ctx(request).artifacts
    if store is None:
        raise NotSupported("this server has no artifact store (start it with --artifacts URL)")
    return store


def _key(p: Params) -> str:
    key = p.text("key")
    if key is None:
        raise ValidationError("key is required", details={"field": "key"})
    return key


async def list_artifacts(request: Request) -> Response:
    p = Params(request.query_params)
    page = await _artifacts(request).list_keys(
        p.text("prefix") or "", limit=_limit(p, 100), cursor=p.text("cursor")
    )
    return ok({"items": page.keys, "cursor": page.next_cursor})


async def stat_artifact(request: Request) -> Response:
    return ok(await _artifacts(request).stat(_key(Params(request.query_params))))


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (first, last) inclusive; None means the whole object.
    Several ranges are answered with the whole object (allowed by RFC 9110)."""
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    try:
        if not dash:
            raise ValueError
        if first_s == "":
            suffix = int(last_s)
            if suffix <= 0:
                raise ValueError
            first, last = max(0, size - suffix), size - 1
        else:
            first = int(first_s)
            last = int(last_s) if last_s else size - 1
            last = min(last, size - 1)
    except ValueError:
        raise RangeNotSatisfiable(f"malformed range {header!r}", details={"size": size}) from None
    if first < 0 or first > last or first >= size:
        raise RangeNotSatisfiable(f"range {header!r} outside 0-{size - 1}", details={"size": size})
    return first, last


def _disposition(key: str) -> str:
    name = key.rsplit("/", 1)[-1] or "artifact"
    ascii_name = "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in name
    )
    ascii_name = ascii_name[:120] or "artifact"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def download_artifact(request: Request) -> Response:
    """Streamed, never whole in memory; a range skips to its start while streaming."""
    store = _artifacts(request)
    key = _key(Params(request.query_params))
    stat = await store.stat(key)
    try:
        span = parse_range(request.headers.get("range"), stat.size)
    except RangeNotSatisfiable:
        return JSONResponse(
            {"code": "range_not_satisfiable", "message": "range outside the object"},
            status_code=416,
            headers={"content-range": f"bytes */{stat.size}"},
        )
    first, last = span if span is not None else (0, stat.size - 1)
    length = max(0, last - first + 1)
    chunks = store.get_stream(key, chunk_size=256 * 1024)

    async def body() -> AsyncIterator[bytes]:
        pos, remaining = 0, length
        async for chunk in chunks:
            end = pos + len(chunk)
            if end > first and remaining > 0:
                piece = chunk[max(0, first - pos) :]
                piece = piece[:remaining]
                remaining -= len(piece)
                yield piece
            pos = end
            if remaining <= 0:
                break

    headers = {
        "content-length": str(length),
        "accept-ranges": "bytes",
        "etag": f'"{stat.sha256}"',
        "last-modified": stat.modified_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "content-disposition": _disposition(key),
        "content-security-policy": "sandbox; default-src 'none'",
        "cache-control": "no-cache",
    }
    status = 200
    if span is not None:
        status = 206
        headers["content-range"] = f"bytes {first}-{last}/{stat.size}"
    return StreamingResponse(
        body(), status_code=status, headers=headers, media_type="application/octet-stream"
    )


# ---------------------------------------------------------------- writes


async def read_body(request: Request) -> bytes:
    """The body, refused as soon as it passes the limit (chunked bodies have no length)."""
    limit: int = request.scope.get("state", {}).get("body_limit", 1 << 20)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
    return bytes(data)


async def read_json(request: Request) -> Any:
    raw = await read_body(request)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("the request body is not JSON") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a JSON object")
    return value


async def put_session(request: Request) -> Response:
    doc = dict(_object(await read_json(request), "the session"))
    sid = request.path_params["session_id"]
    if doc.setdefault("id", sid) != sid:
        raise ValidationError("the body's id differs from the URL's", details={"field": "id"})
    now = iso(utcnow())
    doc.setdefault("status", "pending")
    doc.setdefault("created_at", now)
    doc.setdefault("updated_at", now)
    session = Session.from_dict(doc)
    await ctx(request).store.save_session(session)
    return ok(session)


async def put_run(request: Request) -> Response:
    doc = dict(_object(await read_json(request), "the run"))
    rid = request.path_params["run_id"]
    if doc.setdefault("id", rid) != rid:
        raise ValidationError("the body's id differs from the URL's", details={"field": "id"})
    doc.setdefault("status", "pending")
    doc.setdefault("started_at", iso(utcnow()))
    run = Run.from_dict(doc)
    await ctx(request).store.save_run(run)
    return ok(run)


async def append_events(request: Request) -> Response:
    """``{"events": [...], "expected_sequence": N?}``; 409 ``sequence_conflict`` on a lost race."""
    body = _object(await read_json(request), "the body")
    sid = request.path_params["session_id"]
    raw_events = body.get("events")
    if not isinstance(raw_events, list):
        raise ValidationError("events must be a list", details={"field": "events"})
    events: list[Event] = []
    for i, raw in enumerate(raw_events):
        doc = dict(_object(raw, f"events[{i}]"))
        if doc.setdefault("session_id", sid) != sid:
            raise ValidationError(f"events[{i}] names another session", details={"index": i})
        doc.pop("sequence_number", None)  # always assigned by the store (contract 2.3)
        if doc.get("id") is None:
            doc["id"] = new_event_id()
        if doc.get("timestamp") is None:
            doc["timestamp"] = iso(utcnow())
        doc.setdefault("schema_version", 1)
        event = Event.from_dict(doc)
        events.append(event)
    stored = await ctx(request).store.append_events(
        events, expected_sequence=body.get("expected_sequence")
    )
    return ok({"items": stored}, status=201)


async def put_artifact(request: Request) -> Response:
    store = _artifacts(request)
    key = _key(Params(request.query_params))
    data = await read_body(request)
    await store.put(key, data)
    return ok(await store.stat(key), status=201)
