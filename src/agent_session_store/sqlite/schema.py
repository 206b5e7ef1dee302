"""The schema, its versions, and the checks made when a store opens a file.

Events are clustered by ``(session_id, seq)`` in a WITHOUT ROWID table, so a page of a
session's log is one contiguous range read; ``id`` has its own unique index for idempotency.
``seqs`` holds each session's counter: the highest sequence number ever assigned (an import
may leave gaps below it). ``sessions.updated_at_us`` is the session's ``updated_at`` as activity
moves it, which may be newer than the saved doc's. ``seqs.change`` numbers the transaction that
last moved each counter, so finding what changed costs what changed. ``meta`` records the
schema version; an older schema is refused unless migrated.
"""

from __future__ import annotations

import sqlite3

from ..errors import MigrationRequiredError, StorageError
from ..models import parse_iso, to_micros
from .connection import Database

#: (version, statements). Each step runs once, in order, inside one write transaction.
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (
        1,
        (
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            " WITHOUT ROWID",
            # Clustered by (session_id, seq): a page of one session is a contiguous range.
            """CREATE TABLE IF NOT EXISTS events (
                session_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                run_id TEXT,
                timestamp_us INTEGER NOT NULL,
                data TEXT NOT NULL,
                metadata TEXT NOT NULL,
                schema_version INTEGER NOT NULL,
                provider TEXT,
                correlation_id TEXT,
                PRIMARY KEY (session_id, seq)
            ) WITHOUT ROWID""",
            # The run_id and type filters of get_events cost what they return (contract 3.9).
            "CREATE INDEX IF NOT EXISTS events_by_run ON events (session_id, run_id, seq)"
            " WHERE run_id IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS events_by_type ON events (session_id, type, seq)",
            "CREATE TABLE IF NOT EXISTS seqs (session_id TEXT PRIMARY KEY,"
            " last_seq INTEGER NOT NULL) WITHOUT ROWID",
            """CREATE TABLE IF NOT EXISTS sessions (
                id TEXT PRIMARY KEY,
                agent_id TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at_us INTEGER NOT NULL,
                doc TEXT NOT NULL
            )""",
            # One index per filter combination, each ending in the list order (contract 3.3).
            "CREATE INDEX IF NOT EXISTS sessions_by_created ON sessions (created_at_us, id)",
            "CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions (status, created_at_us, id)",
            "CREATE INDEX IF NOT EXISTS sessions_by_agent"
            " ON sessions (agent_id, created_at_us, id)",
            "CREATE INDEX IF NOT EXISTS sessions_by_agent_status"
            " ON sessions (agent_id, status, created_at_us, id)",
            """CREATE TABLE IF NOT EXISTS runs (
                id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL,
                status TEXT NOT NULL,
                started_at_us INTEGER NOT NULL,
                doc TEXT NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session_id, started_at_us, id)",
            "CREATE INDEX IF NOT EXISTS runs_by_session_status"
            " ON runs (session_id, status, started_at_us, id)",
        ),
    ),
    (
        2,
        (
            # The session's updated_at, which appends and run saves move (contract C5)
            # without rewriting the doc; ordered by an index for "most recently active".
            "ALTER TABLE sessions ADD COLUMN updated_at_us INTEGER",
            "UPDATE sessions SET updated_at_us = iso_micros(json_extract(doc, '$.updated_at'))",
            "CREATE INDEX IF NOT EXISTS sessions_by_updated ON sessions (updated_at_us, id)",
            # Which counters moved, in commit order: the cross-process watcher reads only the
            # sessions changed since its last look. Rows are never deleted (a deleted
            # session's counter goes back to 0 under a new number), so numbers only grow.
            "ALTER TABLE seqs ADD COLUMN change INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX IF NOT EXISTS seqs_by_change ON seqs (change)",
        ),
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

#: Event columns in EncodedEvent order, then seq: what codec.decode_event reads.
EVENT_COLUMNS = (
    "id, session_id, type, run_id, timestamp_us, data, metadata, schema_version, provider,"
    " correlation_id, seq"
)
LAST_SEQ = "SELECT last_seq FROM seqs WHERE session_id = ?"
LAST_CHANGE = "SELECT coalesce(max(change), 0) FROM seqs"


def last_seq(conn: sqlite3.Connection, session_id: str) -> int:
    row = conn.execute(LAST_SEQ, (session_id,)).fetchone()
    return 0 if row is None else int(row[0])


def read_version(conn: sqlite3.Connection) -> int | None:
    """The recorded schema version; None when the file has no schema at all."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else int(row[0])


def migration_required(path: str, found: int | None) -> MigrationRequiredError:
    what = "has no schema" if found is None else f"has schema version {found}"
    return MigrationRequiredError(
        f"the SQLite database {path} {what}; this code needs version "
        f"{SCHEMA_VERSION}. Run `agent-session-store migrate sqlite:///{path}`, "
        "or open it with auto_migrate=True (URL option ?auto_migrate=true)",
        details={"path": path, "found": found, "needed": SCHEMA_VERSION},
    )


def too_new(path: str, found: int) -> StorageError:
    return StorageError(
        f"the SQLite database {path} has schema version {found}, newer than the "
        f"{SCHEMA_VERSION} this code knows: upgrade agent-session-store",
        details={"path": path, "found": found, "needed": SCHEMA_VERSION},
    )


def use_wal(db: Database, conn: sqlite3.Connection) -> None:
    mode = db.retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
    if mode is None or str(mode[0]).lower() != "wal":
        raise StorageError(
            f"the SQLite database {db.path} cannot use WAL mode "
            f"(journal mode stays {mode[0] if mode else None!r}); "
            "WAL needs a local file system with shared-memory support",
            details={"path": db.path},
        )


def _iso_micros(text: str | None) -> int | None:
    return None if text is None else to_micros(parse_iso(text, "session.updated_at"))


def migrate(db: Database, conn: sqlite3.Connection) -> None:
    """Apply the missing steps in one write transaction: safe when processes race."""
    use_wal(db, conn)
    conn.create_function("iso_micros", 1, _iso_micros, deterministic=True)

    def attempt() -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = read_version(conn) or 0  # again, now that we hold the write lock
            if found > SCHEMA_VERSION:
                raise too_new(db.path, found)
            for version, statements in MIGRATIONS:
                if version > found:
                    for statement in statements:
                        conn.execute(statement)
            if found < SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    db.retry_busy(attempt)


def migrate_file(db: Database) -> None:
    """The explicit ``migrate`` step: create the file if needed, bring its schema up to date."""
    conn = db.connect(create=True)
    try:
        migrate(db, conn)
    finally:
        conn.close()


def is_blank(conn: sqlite3.Connection) -> bool:
    """A file with nothing in it yet: new, zero bytes, or a database without a single table."""
    return conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None


def open_checked(db: Database, auto_migrate: bool) -> sqlite3.Connection:
    """The write connection, once the file's schema is known to be current (or made so).

    A blank file gets the schema as every embedded store does; an older schema, or a database
    holding other tables, is changed only when asked to (``auto_migrate`` or ``migrate``).
    """
    conn = db.connect(create=True)
    try:
        found = read_version(conn)
        if found is not None and found > SCHEMA_VERSION:
            raise too_new(db.path, found)
        if found is None or found < SCHEMA_VERSION:
            if not auto_migrate and not (found is None and is_blank(conn)):
                raise migration_required(db.path, found)
            migrate(db, conn)
        use_wal(db, conn)
    except BaseException:
        conn.close()
        raise
    return conn
