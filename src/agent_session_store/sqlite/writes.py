"""The write work: functions of a :class:`~.writer.Tx`, run on the writer thread inside the
group's transaction (``BEGIN IMMEDIATE``: no other process writes meanwhile, so what they read
stays true until the commit). Each raises to roll back only its own request."""

from __future__ import annotations

import functools
import json
import sqlite3
from typing import Any

from ..codec import EncodedEvent
from ..errors import sequence_conflict
from ..models import Run, Session, to_micros, utcnow
from ..query import run_facts
from . import queries
from .schema import EVENT_COLUMNS
from .writer import Rows, Tx

_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_EVENT_OR_SKIP = _INSERT_EVENT + " ON CONFLICT (id) DO NOTHING"
_EVENT_BY_ID = f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?"
_SAVE_SEQ = (
    "INSERT INTO seqs (session_id, last_seq, change) VALUES (?, ?, ?)"
    " ON CONFLICT (session_id) DO UPDATE SET last_seq = excluded.last_seq,"
    " change = excluded.change"
)
_RESET_SEQ = "UPDATE seqs SET last_seq = 0, change = ? WHERE session_id = ?"
_TOUCH_SESSION = "UPDATE sessions SET updated_at_us = ? WHERE id = ?"
_SESSION_COLUMNS = (
    "agent_id",
    "status",
    "created_at_us",
    "doc",
    "updated_at_us",
    "deleted_at_us",
    "tags",
)
#: The run's facts (query.run_facts) beside its doc; agent_id is its session's, if saved yet.
_RUN_COLUMNS = (
    "session_id",
    "status",
    "started_at_us",
    "doc",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "agent_id",
)
_RUN_AGENT = "SELECT agent_id FROM sessions WHERE id = ?"


@functools.cache
def _upsert_sql(table: str, columns: tuple[str, ...]) -> tuple[str, str]:
    """The row's current values, and its insert."""
    names = ", ".join(columns)
    return (
        f"SELECT {names} FROM {table} WHERE id = ?",
        f"INSERT INTO {table} (id, {names}) VALUES (?{', ?' * len(columns)})",
    )


@functools.cache
def _update_sql(table: str, columns: tuple[str, ...]) -> str:
    sets = ", ".join(f"{name} = ?" for name in columns)
    return f"UPDATE {table} SET {sets} WHERE id = ?"


def _upsert(
    conn: sqlite3.Connection,
    table: str,
    columns: tuple[str, ...],
    key: str,
    values: tuple[Any, ...],
) -> None:
    """Insert the row, or set only the columns whose value differs: SQLite rewrites every
    index over a column an UPDATE names, changed or not, and a flush re-saves its session and
    run with mostly the same values (an ADK append wrote ~30 pages, ~16 of them index entries
    it put back as they were; issue 10)."""
    select, insert = _upsert_sql(table, columns)
    current = conn.execute(select, (key,)).fetchone()
    if current is None:
        conn.execute(insert, (key, *values))
        return
    changed = tuple(i for i, (old, new) in enumerate(zip(current, values)) if old != new)
    if changed:
        names = tuple(columns[i] for i in changed)
        conn.execute(_update_sql(table, names), (*(values[i] for i in changed), key))


IN_CHUNK = 500  # ids per "WHERE id IN (...)" lookup, well under SQLite's variable limit


# ---------------------------------------------------------------- appends


def append(tx: Tx, rows: list[EncodedEvent], expected: int | None = None) -> Rows:
    """Number and store rows (ids unique in the list); ids already stored keep their event.

    With ``expected`` (all rows name one session), the session's counter must equal it, unless
    every id is already stored: a retry after a lost reply gets the stored events (3.12).
    Returns the stored rows, numbered; they become Events once the group has committed.
    """
    if expected is not None:
        _check_expected(tx, rows[0][1], rows, expected)
    conn = tx.conn
    if len(rows) == 1:
        row = rows[0]
        sid = row[1]
        seq = tx.last_seq(sid) + 1
        numbered = (*row, seq)
        if conn.execute(_INSERT_EVENT_OR_SKIP, numbered).rowcount:
            conn.execute(_SAVE_SEQ, (sid, seq, tx.change))
            _stored(tx, sid, seq)
            tx.stored((numbered,))
            return Rows((numbered,))
        return Rows((conn.execute(_EVENT_BY_ID, (row[0],)).fetchone(),))
    # Optimistic: number every row and insert; if an id was already stored the count is
    # short, and we undo and redo with the stored ids set aside.
    conn.execute("SAVEPOINT batch")
    out, last = _number(tx, rows)
    fresh: list[tuple[Any, ...]] = out
    if conn.executemany(_INSERT_EVENT_OR_SKIP, out).rowcount == len(rows):
        conn.execute("RELEASE batch")
    else:
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        stored = stored_rows(conn, [r[0] for r in rows])
        new, last = _number(tx, [r for r in rows if r[0] not in stored])
        conn.executemany(_INSERT_EVENT, new)
        fresh = new
        stored.update((r[0], r) for r in new)
        out = Rows(stored[r[0]] for r in rows)
    change = tx.change
    if len(last) == 1:  # one session, as usual: execute is cheaper than executemany of one
        [(sid, seq)] = last.items()
        conn.execute(_SAVE_SEQ, (sid, seq, change))
    else:
        conn.executemany(_SAVE_SEQ, [(sid, seq, change) for sid, seq in last.items()])
    for sid, seq in last.items():
        _stored(tx, sid, seq)
    tx.stored(fresh)
    return out


def _check_expected(tx: Tx, session_id: str, rows: list[EncodedEvent], expected: int) -> None:
    """The conditional append's test, costing nothing more when it passes (the counter is
    read for numbering anyway); the stored-ids lookup is paid only on a mismatch."""
    actual = tx.last_seq(session_id)
    if actual == expected:
        return
    if rows and len(stored_rows(tx.conn, [r[0] for r in rows])) == len(rows):
        return  # all stored: the append below returns them and writes nothing
    raise sequence_conflict(session_id, expected, actual)


def _stored(tx: Tx, session_id: str, last: int) -> None:
    tx.set_last(session_id, last)
    tx.touch(session_id)


def _number(tx: Tx, rows: list[EncodedEvent]) -> tuple[Rows, dict[str, int]]:
    """Each session's rows get its next numbers in input order (contract 3.8.3)."""
    last: dict[str, int] = {}
    out = Rows()
    for row in rows:
        sid = row[1]
        n = last.get(sid)
        n = (tx.last_seq(sid) if n is None else n) + 1
        last[sid] = n
        out.append((*row, n))
    return out, last


def stored_rows(conn: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """The stored rows of those ids that are stored, by id."""
    found: dict[str, tuple[Any, ...]] = {}
    for i in range(0, len(ids), IN_CHUNK):
        chunk = ids[i : i + IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE id IN ({marks})"
        for r in conn.execute(sql, chunk):
            found[r[0]] = r
    return found


# ---------------------------------------------------------------- sessions and runs


def put_session(tx: Tx, session: Session, doc: str) -> None:
    """Upsert as given: the saved ``updated_at`` stands until the next activity."""
    deleted = None if session.deleted_at is None else to_micros(session.deleted_at)
    _upsert(
        tx.conn,
        "sessions",
        _SESSION_COLUMNS,
        session.id,
        (
            session.agent_id,
            session.status.value,
            to_micros(session.created_at),
            doc,
            to_micros(session.updated_at),
            deleted,
            json.dumps(session.tags, separators=(",", ":")),
        ),
    )
    tx.touch(session.id, now=False)


def _put_run(tx: Tx, run: Run, doc: str) -> None:
    f = run_facts(run)
    agent = tx.conn.execute(_RUN_AGENT, (run.session_id,)).fetchone()
    _upsert(
        tx.conn,
        "runs",
        _RUN_COLUMNS,
        run.id,
        (
            run.session_id,
            run.status.value,
            to_micros(run.started_at),
            doc,
            f.provider,
            f.model,
            f.input_tokens,
            f.output_tokens,
            f.total_tokens,
            f.cost_usd,
            None if agent is None else agent[0],
        ),
    )


def save_run(tx: Tx, run: Run, doc: str) -> None:
    """A run save is activity in its session (C5)."""
    _put_run(tx, run, doc)
    tx.touch(run.session_id)


def flush(
    tx: Tx,
    session: Session,
    session_doc: str,
    run: Run,
    run_doc: str,
    rows: list[EncodedEvent],
    expected: int | None = None,
) -> Rows:
    """Upsert the session and run and append, all or nothing; ``expected`` is checked first,
    against the flushed session, even with no rows."""
    if expected is not None:
        _check_expected(tx, session.id, rows, expected)
    put_session(tx, session, session_doc)
    _put_run(tx, run, run_doc)
    tx.touch(session.id)  # replaced, then touched (C5)
    return append(tx, rows) if rows else Rows()


def delete_session(tx: Tx, session_id: str) -> None:
    conn = tx.conn
    conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
    conn.execute("DELETE FROM runs WHERE session_id = ?", (session_id,))
    conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    conn.execute(_RESET_SEQ, (tx.change, session_id))  # kept: change numbers only grow
    tx.set_last(session_id, 0)
    tx.touch(session_id, now=False)


def finish(tx: Tx) -> None:
    """Last in every transaction: one updated_at write per active session, at commit time."""
    active = [sid for sid, now in tx.active.items() if now]
    if len(active) == 1:  # the usual case: execute is cheaper than executemany of one
        tx.conn.execute(_TOUCH_SESSION, (to_micros(utcnow()), active[0]))
    elif active:
        now = to_micros(utcnow())
        tx.conn.executemany(_TOUCH_SESSION, [(now, sid) for sid in active])


# ---------------------------------------------------------------- import


def import_rows(
    tx: Tx,
    session_id: str,
    session_doc: str | None,
    session: Session | None,
    runs: list[tuple[Run, str]],
    rows: list[tuple[EncodedEvent, int]],
    latest_sequence: int,
) -> tuple[int, int]:
    """Write rows at their own numbers; an identical row there is skipped, anything else in
    the way is a conflict and nothing is written (contract 10). Returns (imported, skipped)."""
    conn = tx.conn
    known = stored_rows(conn, [row[0] for row, _ in rows])
    taken = _taken(conn, session_id, [seq for _, seq in rows])
    fresh: list[tuple[Any, ...]] = []
    for row, seq in rows:
        found = known.get(row[0])
        if found is not None:
            if found[1] == session_id and found[10] == seq:
                continue
            raise sequence_conflict(
                session_id,
                seq,
                found[10],
                f"event {row[0]!r} is already stored in session {found[1]!r} at sequence "
                f"{found[10]}, not at {seq} in {session_id!r}",
            )
        if seq in taken:
            raise sequence_conflict(
                session_id,
                seq,
                seq,
                f"session {session_id!r} holds another event at sequence {seq}",
            )
        fresh.append((*row, seq))
    if session is not None and session_doc is not None:
        put_session(tx, session, session_doc)
    for run, doc in runs:
        _put_run(tx, run, doc)
    if fresh:
        conn.executemany(_INSERT_EVENT, fresh)
        tx.stored(fresh)
    top = max([tx.last_seq(session_id), latest_sequence, *(r[10] for r in fresh)])
    if top != tx.last_seq(session_id):
        conn.execute(_SAVE_SEQ, (session_id, top, tx.change))
        tx.set_last(session_id, top)
    return len(fresh), len(rows) - len(fresh)


def _taken(conn: sqlite3.Connection, session_id: str, seqs: list[int]) -> set[int]:
    """Which of these numbers hold an event in the session (primary-key lookups)."""
    taken: set[int] = set()
    for i in range(0, len(seqs), IN_CHUNK):
        chunk = seqs[i : i + IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT seq FROM events WHERE session_id = ? AND seq IN ({marks})"
        taken.update(r[0] for r in conn.execute(sql, [session_id, *chunk]))
    return taken


# ---------------------------------------------------------------- retention


def soft_delete(
    tx: Tx,
    cutoff_us: int,
    exempt_statuses: tuple[str, ...],
    exempt_tags: tuple[str, ...],
    now_us: int,
    now_iso: str,
) -> int:
    """Mark expired sessions deleted; not activity, so nothing is touched (C5)."""
    return queries.soft_delete(tx.conn, cutoff_us, exempt_statuses, exempt_tags, now_us, now_iso)


def prune(
    tx: Tx,
    session_id: str,
    max_events: int,
    first_types: tuple[str, ...],
    protected: frozenset[str],
) -> int:
    """Remove the oldest unprotected events beyond the maximum; the counter stays."""
    return queries.prune(tx.conn, session_id, max_events, first_types, protected)
