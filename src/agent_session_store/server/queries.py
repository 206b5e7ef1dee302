"""The read side the API and the pages share, over the public ports only.

Stores that implement the query protocol (contract 7: ``search_sessions``,
``get_session_stats``, ``get_usage_summary``, ``get_cost_summary``, ``search_events``) are
called directly. For a store without it (a third-party backend that implements only
``SessionStore``) each function falls back to what ``SessionStore`` offers, or raises
``not_supported`` where that would mean a full scan. Endpoints and pages only ever call these
functions, so which path serves them is decided in one place.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import enum
import json
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import InvalidCursorError
from ..models import Event, Run, Session, iso
from ..ports import SessionStore
from ..querying import supports_query
from .errors import NotSupported

__all__ = [
    "SESSION_ORDERS",
    "PageOut",
    "cost_summary",
    "has_query",
    "search_events",
    "search_sessions",
    "session_stats",
    "session_stats_value",
    "to_json",
    "usage_summary",
]

SESSION_ORDERS = ("updated_at_desc", "created_at_asc", "created_at_desc")
EVENT_ORDERS = ("timestamp_asc", "timestamp_desc", "sequence_asc")


@dataclass(frozen=True, slots=True)
class PageOut:
    items: list[Any]
    cursor: str | None
    total_count: int | None = None


_SUPPORT: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def has_query(store: SessionStore) -> bool:
    """Whether the store answers contract 7 queries: ``querying.supports_query`` (the
    ``SessionQuery`` protocol, and ``implements_query`` where the store says), asked once
    per store; a storage error from a query is never taken for a missing API."""
    try:
        return _SUPPORT[store]
    except (KeyError, TypeError):
        pass
    supported = supports_query(store)
    with contextlib.suppress(TypeError):
        _SUPPORT[store] = supported
    return supported


def _method(store: SessionStore, name: str) -> Any:
    found = getattr(store, name, None)
    return found if callable(found) and has_query(store) else None


def to_json(value: Any) -> Any:
    """Models, query results (dataclasses), enums and datetimes as plain JSON values."""
    if isinstance(value, Session | Run | Event):
        return value.to_dict()
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


# ---------------------------------------------------------------- sessions (7.2)


def _offset_cursor(offset: int) -> str:
    raw = json.dumps({"m": "list_sessions", "o": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_offset_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        doc = json.loads(raw)
        offset = doc["o"]
        if doc.get("m") != "list_sessions" or type(offset) is not int or offset < 0:
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursorError("malformed or foreign cursor") from None
    return offset


async def search_sessions(
    store: SessionStore,
    *,
    agent_id: str | None = None,
    status: list[str] | None = None,
    tags: list[str] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    include_deleted: bool = False,
    order_by: str = "updated_at_desc",
    limit: int = 50,
    cursor: str | None = None,
    include_total: bool = False,
) -> PageOut:
    search = _method(store, "search_sessions")
    if search is not None:
        page = await search(
            agent_id=agent_id,
            status=status,
            tags=tags,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
            include_deleted=include_deleted,
            order_by=order_by,
            limit=limit,
            cursor=cursor,
            include_total=include_total,
        )
        return PageOut(list(page.items), page.cursor, page.total_count)
    # SessionStore alone: list_sessions (created_at ascending, offset paging).
    unsupported = [
        name
        for name, value in (
            ("tags", tags),
            ("created_after", created_after),
            ("created_before", created_before),
            ("updated_after", updated_after),
            ("updated_before", updated_before),
            ("include_total", include_total or None),
        )
        if value is not None
    ]
    if order_by != "created_at_asc":
        unsupported.append(f"order_by={order_by}")
    if status is not None and len(status) > 1:
        unsupported.append("several statuses")
    if unsupported:
        raise NotSupported(
            "this store has no query API (contract 7); unsupported here: " + ", ".join(unsupported)
        )
    offset = 0 if cursor is None else _read_offset_cursor(cursor)
    found = await store.list_sessions(
        status=status[0] if status else None, agent_id=agent_id, limit=limit, offset=offset
    )
    full = len(found) == limit
    if not include_deleted:
        found = [s for s in found if s.deleted_at is None]
    return PageOut(found, _offset_cursor(offset + limit) if full else None)


def default_session_order(store: SessionStore) -> str:
    """Newest activity first where the store can say so."""
    return "updated_at_desc" if has_query(store) else "created_at_asc"


# ---------------------------------------------------------------- stats (7.3)


def _num(value: Any) -> int:
    return value if type(value) is int else int(value) if type(value) is float else 0


async def session_stats(store: SessionStore, session_id: str) -> dict[str, Any]:
    result: dict[str, Any] = to_json(await session_stats_value(store, session_id))
    return result


async def session_stats_value(store: SessionStore, session_id: str) -> Any:
    """The store's ``SessionStats`` as it came (or the fallback's dict): for a response body,
    which ``jsonenc.dumps_api`` encodes to the same JSON without a ``to_json`` copy first."""
    stats = _method(store, "get_session_stats")
    if stats is not None:
        return await stats(session_id)
    await store.get_session(session_id)  # session_not_found as the query API would
    return await stats_from_log(store, session_id)


async def stats_from_log(store: SessionStore, session_id: str) -> dict[str, Any]:
    """Stats from runs and the log alone (also for events whose session has no record)."""
    runs = await store.list_runs(session_id)
    first = await store.get_events(session_id, limit=1)
    last = await store.get_events(session_id, limit=1, order="desc")
    totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    costs = [r.cost_usd for r in runs if r.cost_usd is not None]
    status_counts: dict[str, int] = {}
    for r in runs:
        i, o = _num(r.token_usage.get("input_tokens")), _num(r.token_usage.get("output_tokens"))
        totals["input_tokens"] += i
        totals["output_tokens"] += o
        t = r.token_usage.get("total_tokens")
        totals["total_tokens"] += _num(t) if t is not None else i + o
        status_counts[r.status.value] = status_counts.get(r.status.value, 0) + 1
    return {
        "event_count": None,  # not countable without a scan on SessionStore alone
        "run_count": len(runs),
        "token_totals": totals,
        "cost_usd": sum(costs) if costs else None,
        "providers_used": sorted({r.provider for r in runs if r.provider}),
        "first_event_at": iso(first[0].timestamp) if first else None,
        "last_event_at": iso(last[0].timestamp) if last else None,
        "status_counts": status_counts,
        "latest_sequence": await store.get_latest_sequence(session_id),
    }


# ---------------------------------------------------------------- usage, cost (7.5, 7.6)


async def usage_summary(store: SessionStore, **filters: Any) -> dict[str, Any]:
    method = _method(store, "get_usage_summary")
    if method is None:
        raise NotSupported("this store has no query API (contract 7): no usage summary")
    result: dict[str, Any] = to_json(await method(**filters))
    return result


async def cost_summary(store: SessionStore, **filters: Any) -> dict[str, Any]:
    method = _method(store, "get_cost_summary")
    if method is None:
        raise NotSupported("this store has no query API (contract 7): no cost summary")
    result: dict[str, Any] = to_json(await method(**filters))
    return result


# ---------------------------------------------------------------- events (7.7)


async def search_events(store: SessionStore, **filters: Any) -> PageOut:
    method = _method(store, "search_events")
    if method is None:
        raise NotSupported("this store has no query API (contract 7): no event search")
    page = await method(**filters)
    return PageOut(list(page.items), page.cursor, getattr(page, "total_count", None))
