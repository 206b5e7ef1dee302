"""The read statements, run on reader threads; module-level so tests can EXPLAIN them.

Every read is one statement on a WAL snapshot: readers never wait for the writer and always see
every committed write.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..base import EventQuery
from ..codec import decode_event, decode_run, decode_session, loads_stored
from ..models import Event, Run, Session
from .schema import EVENT_COLUMNS

_ACTIVE_RUN = (
    "SELECT doc FROM runs WHERE session_id = ? AND status = 'running'"
    " ORDER BY started_at_us DESC, id DESC LIMIT 1"
)


def events_sql(q: EventQuery) -> tuple[str, list[Any]]:
    """The get_events statement for a query.

    With a run or type filter the planner would rather walk the session's primary-key range
    (no second lookup per row), which costs what the session holds, not what is returned;
    INDEXED BY keeps it on the filter's index (contract 3.9). Every index ends in ``seq``, so
    ``desc`` walks the same range backwards.
    """
    where = ["session_id = ?", "seq > ?"]
    params: list[Any] = [q.session_id, q.after or 0]
    if q.before is not None:
        where.append("seq < ?")
        params.append(q.before)
    if q.run_id is not None:
        where.append("run_id = ?")
        params.append(q.run_id)
    if q.type is not None:
        where.append("type = ?")
        params.append(q.type)
    if q.since_us is not None:
        where.append("timestamp_us >= ?")
        params.append(q.since_us)
    params.append(-1 if q.limit is None else q.limit)
    order = "seq DESC" if q.desc else "seq"
    index = ""
    if q.run_id is not None:
        index = " INDEXED BY events_by_run"  # a run is usually the narrower filter
    elif q.type is not None:
        index = " INDEXED BY events_by_type"
    where_sql = " AND ".join(where)
    sql = f"SELECT {EVENT_COLUMNS} FROM events{index} WHERE {where_sql} ORDER BY {order} LIMIT ?"
    return sql, params


def sessions_sql(
    status: str | None, agent_id: str | None, limit: int | None, offset: int
) -> tuple[str, list[Any]]:
    """The list_sessions statement; each filter combination has an index in list order."""
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if agent_id is not None:
        where.append("agent_id = ?")
        params.append(agent_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    params += [-1 if limit is None else limit, offset]
    order = " ORDER BY created_at_us, id LIMIT ? OFFSET ?"
    return f"SELECT doc, updated_at_us FROM sessions{clause}{order}", params


def runs_sql(session_id: str, status: str | None, limit: int | None) -> tuple[str, list[Any]]:
    sql = "SELECT doc FROM runs WHERE session_id = ?"
    params: list[Any] = [session_id]
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    sql += " ORDER BY started_at_us, id LIMIT ?"
    params.append(-1 if limit is None else limit)
    return sql, params


def get_events(conn: sqlite3.Connection, query: EventQuery) -> list[Event]:
    sql, params = events_sql(query)
    return [decode_event(r, r[10]) for r in conn.execute(sql, params)]


_NEWEST_PAYLOADS = (
    "SELECT type, data FROM events WHERE session_id = ? AND seq > 0 ORDER BY seq DESC LIMIT ?"
)


def newest_payloads(conn: sqlite3.Connection, session_id: str, limit: int) -> list[tuple[str, Any]]:
    """The primary key walked backwards, two columns read and one decoded per row."""
    return [(t, loads_stored(d)) for t, d in conn.execute(_NEWEST_PAYLOADS, (session_id, limit))]


def _session(doc: str, updated_us: int | None) -> Session:
    """The saved doc, with the ``updated_at`` that activity has moved since (C5)."""
    return decode_session(doc, updated_us)


def get_session(conn: sqlite3.Connection, session_id: str) -> Session | None:
    sql = "SELECT doc, updated_at_us FROM sessions WHERE id = ?"
    row = conn.execute(sql, (session_id,)).fetchone()
    return None if row is None else _session(row[0], row[1])


def list_sessions(
    conn: sqlite3.Connection,
    status: str | None,
    agent_id: str | None,
    limit: int | None,
    offset: int,
) -> list[Session]:
    sql, params = sessions_sql(status, agent_id, limit, offset)
    return [_session(r[0], r[1]) for r in conn.execute(sql, params)]


def get_run(conn: sqlite3.Connection, run_id: str) -> Run | None:
    row = conn.execute("SELECT doc FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else decode_run(row[0])


def list_runs(
    conn: sqlite3.Connection, session_id: str, status: str | None, limit: int | None
) -> list[Run]:
    sql, params = runs_sql(session_id, status, limit)
    return [decode_run(r[0]) for r in conn.execute(sql, params)]


def get_active_run(conn: sqlite3.Connection, session_id: str) -> Run | None:
    row = conn.execute(_ACTIVE_RUN, (session_id,)).fetchone()
    return None if row is None else decode_run(row[0])
