"""The write work: functions of a :class:`~.writer.Tx`, run on the writer thread inside the
group's transaction. Each raises to roll back only its own request."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..codec import EncodedEvent
from ..models import Run, Session, to_micros
from .schema import EVENT_COLUMNS
from .writer import Rows, Tx

_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_EVENT_OR_SKIP = _INSERT_EVENT + " ON CONFLICT (id) DO NOTHING"
_EVENT_BY_ID = f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?"
_SAVE_SEQ = (
    "INSERT INTO seqs (session_id, last_seq) VALUES (?, ?)"
    " ON CONFLICT (session_id) DO UPDATE SET last_seq = excluded.last_seq"
)
_SAVE_SESSION = (
    "INSERT INTO sessions (id, agent_id, status, created_at_us, doc) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, status = excluded.status,"
    " created_at_us = excluded.created_at_us, doc = excluded.doc"
)
_SAVE_RUN = (
    "INSERT INTO runs (id, session_id, status, started_at_us, doc) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id,"
    " status = excluded.status, started_at_us = excluded.started_at_us, doc = excluded.doc"
)

IN_CHUNK = 500  # ids per "WHERE id IN (...)" lookup, well under SQLite's variable limit


def insert(tx: Tx, rows: list[EncodedEvent]) -> Rows:
    """Number and store rows (ids unique in the list); ids already stored keep their event.

    Returns the stored rows, numbered; they become Events once the group has committed.
    """
    conn = tx.conn
    if len(rows) == 1:
        row = rows[0]
        sid = row[1]
        seq = tx.last_seq(sid) + 1
        numbered = (*row, seq)
        if conn.execute(_INSERT_EVENT_OR_SKIP, numbered).rowcount:
            conn.execute(_SAVE_SEQ, (sid, seq))
            tx.advance(sid, seq)
            return Rows((numbered,))
        return Rows((conn.execute(_EVENT_BY_ID, (row[0],)).fetchone(),))
    # Optimistic: number every row and insert; if an id was already stored the count is
    # short, and we undo and redo with the stored ids set aside.
    conn.execute("SAVEPOINT batch")
    out, last = _number(tx, rows)
    if conn.executemany(_INSERT_EVENT_OR_SKIP, out).rowcount == len(rows):
        conn.execute("RELEASE batch")
    else:
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        stored = stored_rows(conn, [r[0] for r in rows])
        new, last = _number(tx, [r for r in rows if r[0] not in stored])
        conn.executemany(_INSERT_EVENT, new)
        stored.update((r[0], r) for r in new)
        out = Rows(stored[r[0]] for r in rows)
    conn.executemany(_SAVE_SEQ, last.items())
    for sid, seq in last.items():
        tx.advance(sid, seq)
    return out


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


def put_session(tx: Tx, session: Session, doc: str) -> None:
    tx.conn.execute(
        _SAVE_SESSION,
        (session.id, session.agent_id, session.status.value, to_micros(session.created_at), doc),
    )


def put_run(tx: Tx, run: Run, doc: str) -> None:
    tx.conn.execute(
        _SAVE_RUN, (run.id, run.session_id, run.status.value, to_micros(run.started_at), doc)
    )


def flush(
    tx: Tx, session: Session, session_doc: str, run: Run, run_doc: str, rows: list[EncodedEvent]
) -> Rows:
    put_session(tx, session, session_doc)
    put_run(tx, run, run_doc)
    return insert(tx, rows) if rows else Rows()


def delete_session(tx: Tx, session_id: str) -> None:
    conn = tx.conn
    conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
    conn.execute("DELETE FROM runs WHERE session_id = ?", (session_id,))
    conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    conn.execute("DELETE FROM seqs WHERE session_id = ?", (session_id,))
    tx.reset(session_id)
