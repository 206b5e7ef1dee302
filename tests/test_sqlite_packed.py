"""SQLite's packed event pages (reads.fetch_events): one JSON row built by SQLite instead of a
row per event. Every path (packed, decoded on the loop or the reader, or the row fallback) must
give exactly the events the row path gives, whatever the stored text holds."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import orjson
import pytest

from agent_session_store.base import EventQuery
from agent_session_store.codec import decode_event
from agent_session_store.models import Event, EventType
from agent_session_store.sqlite import SQLiteSessionStore, events_sql, reads

SID = "s"
#: Text SQLite's JSON quoting must escape, or pass through untouched, for orjson to read back.
TRICKY = [
    'quote " backslash \\ slash /',
    "\u2028\u2029 line separators",
    "😀 ünïcödé \ufeff",
    "\x01\x1f\x7f controls \t\n\r\b\f",
    "\\ud800 an escaped lone surrogate, as text",
    "",
]


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, auto_migrate=True) as store:
        events = [
            Event(
                type=EventType.MESSAGE_SENT,
                session_id=SID,
                run_id=None if i % 2 else "r1",
                data={"text": text, "n": 2**63 - 1, "neg": -(2**63), "f": 0.1, "i": i},
                metadata={"m": text} if i % 3 else {},
                provider="p" if i % 2 else None,
                correlation_id=f"c{i}" if i % 2 else None,
            )
            for i, text in enumerate(TRICKY * 3)
        ]
        await store.append_events(events)
        await store.append_events(
            [Event(type=EventType.MESSAGE_SENT, session_id=SID, data={"big": 2**70})]
        )
    return path


def rows_path(conn: sqlite3.Connection, q: EventQuery) -> list[Event]:
    sql, params = events_sql(q)
    return [decode_event(r, r[10]) for r in conn.execute(sql, params)]


QUERIES = [
    EventQuery(session_id=SID, limit=100),
    EventQuery(session_id=SID, limit=5, after=3, desc=True),
    EventQuery(session_id=SID, limit=100, run_id="r1"),
    EventQuery(session_id=SID, limit=1),
    EventQuery(session_id="nobody", limit=10),
]


@pytest.mark.parametrize("q", QUERIES)
def test_a_packed_page_decodes_to_the_rows_events(db: Path, q: EventQuery) -> None:
    conn = sqlite3.connect(db)
    got = reads.fetch_events(conn, q)
    assert isinstance(got, str)  # packed: the loop decodes it
    assert reads.unpack_events(got, q.desc) == rows_path(conn, q)
    assert reads.get_events(conn, q) == rows_path(conn, q)


@pytest.mark.parametrize("desc", [False, True])
def test_a_packed_page_out_of_order_is_served_in_order(db: Path, desc: bool) -> None:
    """SQLite does not promise an aggregate's order; whatever it gives, the page is in order."""
    conn = sqlite3.connect(db)
    q = EventQuery(session_id=SID, limit=100, desc=desc)
    packed = reads.fetch_events(conn, q)
    assert isinstance(packed, str)
    rows = orjson.loads(packed)
    random.Random(7).shuffle(rows)
    assert reads.unpack_events(orjson.dumps(rows).decode(), desc) == rows_path(conn, q)


def test_an_unbounded_page_takes_the_row_path(db: Path) -> None:
    conn = sqlite3.connect(db)
    q = EventQuery(session_id=SID)
    got = reads.fetch_events(conn, q)
    assert isinstance(got, list) and got == rows_path(conn, q) and len(got) == 3 * len(TRICKY) + 1


def test_a_page_too_long_for_the_loop_is_decoded_on_the_reader(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "PACKED_LOOP_MAX", 100)
    conn = sqlite3.connect(db)
    q = EventQuery(session_id=SID, limit=100)
    got = reads.fetch_events(conn, q)
    assert isinstance(got, list) and got == rows_path(conn, q)


def test_a_page_over_sqlites_length_limit_takes_the_row_path(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 2000)  # every row fits, the packed page not
    q = EventQuery(session_id=SID, limit=100)
    got = reads.fetch_events(conn, q)
    assert isinstance(got, list) and got == rows_path(conn, q)


def test_a_blob_column_takes_the_row_path(db: Path) -> None:
    """Another program may have stored bytes in a TEXT column: JSON cannot hold them."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE events SET data = CAST(data AS BLOB) WHERE seq = 2")
    q = EventQuery(session_id=SID, limit=100)
    got = reads.fetch_events(conn, q)
    assert isinstance(got, list) and got == rows_path(conn, q)
    assert got[1].data["text"] == TRICKY[1]


def test_other_sqlite_errors_still_reach_the_caller(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TABLE events")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        reads.fetch_events(conn, EventQuery(session_id=SID, limit=10))


async def test_the_store_serves_packed_pages_like_the_rows(db: Path) -> None:
    conn = sqlite3.connect(db)
    async with SQLiteSessionStore(db) as store:
        for q in QUERIES:
            got = await store.get_events(
                q.session_id,
                limit=q.limit,
                after=q.after,
                run_id=q.run_id,
                order="desc" if q.desc else "asc",
            )
            assert got == rows_path(conn, q)
