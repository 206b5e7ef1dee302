"""The read statements, run on reader threads; module-level so tests can EXPLAIN them.

Every read is one statement on a WAL snapshot: readers never wait for the writer and always see
every committed write.
"""

from __future__ import annotations

import sqlite3
from operator import itemgetter
from typing import Any

import orjson

from ..base import EventQuery
from ..codec import decode_page, decode_run, decode_session, loads_stored, reencodes_same
from ..models import Event, Run, Session
from ..ports import EventPageJSON
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


#: The page size up to which get_events takes its rows as one JSON array (:func:`fetch_events`).
PACKED_MAX = 1000
#: A packed page up to this many characters is decoded on the event loop, a longer one here.
PACKED_LOOP_MAX = 1 << 20
_PACKED = f"SELECT json_group_array(json_array({EVENT_COLUMNS})) FROM ({{}})"


def get_events(conn: sqlite3.Connection, query: EventQuery) -> list[Event]:
    """A page of events on this connection (decoded here, whatever the path)."""
    got = fetch_events(conn, query)
    return unpack_events(got, query.desc) if isinstance(got, str) else got


def fetch_events(conn: sqlite3.Connection, query: EventQuery) -> str | list[Event]:
    """A bounded page's rows packed by SQLite into one JSON array of arrays (for
    :func:`unpack_events` on the caller's loop), or the page's events: unbounded, too big to
    pack, or too long to decode on the loop without holding it up (over ``PACKED_LOOP_MAX``).

    The driver releases the GIL around each row's step, and each release hands it to another
    thread that wants it: with a few readers and the event loop busy, those hand-offs cost more
    than the rows (a 100-event API page took ~1.8 ms of server CPU, ~0.8 ms with one reader;
    bench/server.py, issue 11). A packed page is one step, built by SQLite without the GIL;
    orjson reads it back to the same values (text as stored, 64-bit ints). Rows it cannot
    pack (a BLOB, over SQLite's length limit) take the row path.
    """
    sql, params = events_sql(query)
    if query.limit is not None and query.limit <= PACKED_MAX:
        try:
            packed: str = conn.execute(_PACKED.format(sql), params).fetchone()[0]
        except sqlite3.DataError:  # string or blob too big
            pass
        except sqlite3.OperationalError as exc:
            if "BLOB" not in str(exc):  # busy and the rest: the caller's to handle
                raise
        else:
            return packed if len(packed) <= PACKED_LOOP_MAX else unpack_events(packed, query.desc)
    return decode_page(conn.execute(sql, params))


def unpack_events(packed: str, desc: bool) -> list[Event]:
    """The events of a packed page, in sequence order. On the event loop it costs what it
    would on a reader thread (~2 us an event, holding the GIL either way), without the
    hand-offs.

    SQLite aggregates the subquery's rows in their order, but does not promise it (ORDER BY
    inside an aggregate needs 3.44): checking costs ~2 us a page, and a page out of order is
    sorted rather than served."""
    rows: list[Any] = orjson.loads(packed)
    seqs = [r[10] for r in rows]
    if seqs != sorted(seqs, reverse=desc):
        rows.sort(key=itemgetter(10), reverse=desc)
    return decode_page(rows)


# One event as the API writes it (jsonenc.dumps_events), in one printf (a chain of || costs
# an allocation each): strings by json_quote, which escapes as orjson does; the session id
# quoted once, by the caller (?1); the stored payload texts as they are; the timestamp as
# ``models.iso`` writes it (floored: SQLite's / and % truncate, and times before 1970 are < 0).
_US = "((timestamp_us % 1000000) + 1000000) % 1000000"
_EVENT_JSON = (
    'printf(\'{"id":%s,"type":%s,"session_id":%s,"run_id":%s,'
    '"timestamp":"%s.%06dZ","sequence_number":%d,"data":%s,"metadata":%s,'
    '"schema_version":%d,"provider":%s,"correlation_id":%s}\','
    " json_quote(id), json_quote(type), ?1, json_quote(run_id),"
    f" strftime('%Y-%m-%dT%H:%M:%S', (timestamp_us - {_US}) / 1000000, 'unixepoch'), {_US},"
    " seq, data, metadata, schema_version, json_quote(provider), json_quote(correlation_id))"
)
# The page's events joined, their numbers (for the order check), and whether a payload needs
# more than its text (EXACT_MARK: ints past 64 bits; not text at all; not JSON: a row damaged
# outside this package goes the decoding way, which refuses it with a typed error, instead of
# being sent as it is inside the page).
_JSON_PAGE = (
    f"SELECT group_concat({_EVENT_JSON}, ','), group_concat(seq),"
    " max(substr(CAST(data AS BLOB), -1) = x'20' OR substr(CAST(metadata AS BLOB), -1) = x'20'"
    " OR typeof(data) <> 'text' OR typeof(metadata) <> 'text'"
    " OR NOT json_valid(data) OR NOT json_valid(metadata)) FROM ("
)

#: The events' JSON joined, their numbers joined, and whether one needs more than its text.
JSONRows = tuple[str | None, str | None, int | None]


def fetch_events_json(
    conn: sqlite3.Connection, query: EventQuery
) -> JSONRows | EventPageJSON | None:
    """A bounded page as the API's JSON, built by SQLite from the stored texts without the
    GIL, for :func:`page_json` on the caller's loop (a long one is checked here, off it);
    None where it cannot be built (too big, a BLOB): the caller decodes the page."""
    if query.limit is None or query.limit > PACKED_MAX:
        return None
    sql, params = events_sql(query)
    # ?1 in the select, then the subquery's marks, numbered on from 2 by SQLite.
    params = [orjson.dumps(query.session_id).decode(), *params]
    try:
        text, seqs, special = conn.execute(_JSON_PAGE + sql + ")", params).fetchone()
    except sqlite3.DataError:  # string or blob too big
        return None
    except sqlite3.OperationalError as exc:
        if "BLOB" not in str(exc):
            raise
        return None
    got: JSONRows = (text, seqs, special)
    if text is not None and len(text) > PACKED_LOOP_MAX:
        return page_json(got, query.desc)
    return got


def page_json(got: JSONRows, desc: bool) -> EventPageJSON | None:
    """The page of :func:`fetch_events_json`, or None: a payload's text is not what the API
    would write for its value (``codec.reencodes_same``), or SQLite joined the rows out of
    order (it does not promise to keep the subquery's): the caller then decodes the page."""
    text, seq_text, special = got
    if text is None or seq_text is None:
        return EventPageJSON(b"[]", 0, None)
    if special or not reencodes_same(text):
        return None
    seqs = [int(n) for n in seq_text.split(",")]
    if seqs != sorted(seqs, reverse=desc):
        return None
    return EventPageJSON(f"[{text}]".encode(), len(seqs), seqs[-1])


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
