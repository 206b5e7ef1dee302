"""The schema, its versions, and the checks made when a store opens a file.

Events are clustered by ``(session_id, seq)`` in a WITHOUT ROWID table, so a page of a
session's log is one contiguous range read; ``id`` has its own unique index for idempotency.
``seqs`` holds each session's counter: the highest sequence number ever assigned (an import
may leave gaps below it). ``sessions.updated_at_us`` is the session's ``updated_at`` as activity
moves it, which may be newer than the saved doc's. ``seqs.change`` numbers the transaction that
last moved each counter, so finding what changed costs what changed. Version 3 adds what
queries and retention need (contract 7, 8): run facts and each session's deleted_at and tags
as columns, a tag table, and an index for each default ordering and single filter; version 4
drops the one index no default ordering needed (``events_by_seq``). ``meta`` records the
schema version; an older schema is refused unless migrated.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache

from ..codec import decode_run
from ..errors import MigrationRequiredError, StorageError
from ..models import parse_iso, to_micros
from ..query import run_facts
from .connection import Database

_TAG_ROWS = (
    "INSERT OR IGNORE INTO session_tags SELECT new.id, j.value, new.created_at_us,"
    " new.updated_at_us, new.deleted_at_us FROM json_each(new.tags) AS j"
)

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
    (
        3,
        (
            # Queries and retention (contract 7, 8). Sessions keep deleted_at and tags beside
            # the doc; session_tags mirrors each tag with the session's sort values so a tag
            # filter walks an index in page order (triggers keep it in step on every write).
            "ALTER TABLE sessions ADD COLUMN deleted_at_us INTEGER",
            "ALTER TABLE sessions ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
            "UPDATE sessions SET deleted_at_us = iso_micros(json_extract(doc, '$.deleted_at')),"
            " tags = coalesce(json(json_extract(doc, '$.tags')), '[]')",
            "CREATE INDEX IF NOT EXISTS sessions_by_agent_updated"
            " ON sessions (agent_id, updated_at_us, id)",
            "CREATE INDEX IF NOT EXISTS sessions_by_status_updated"
            " ON sessions (status, updated_at_us, id)",
            "CREATE INDEX IF NOT EXISTS sessions_by_deleted ON sessions (deleted_at_us)"
            " WHERE deleted_at_us IS NOT NULL",
            """CREATE TABLE IF NOT EXISTS session_tags (
                session_id TEXT NOT NULL,
                tag TEXT NOT NULL,
                created_at_us INTEGER NOT NULL,
                updated_at_us INTEGER,
                deleted_at_us INTEGER,
                PRIMARY KEY (session_id, tag)
            ) WITHOUT ROWID""",
            "INSERT OR IGNORE INTO session_tags SELECT s.id, j.value, s.created_at_us,"
            " s.updated_at_us, s.deleted_at_us FROM sessions AS s, json_each(s.tags) AS j",
            "CREATE INDEX IF NOT EXISTS session_tags_by_updated"
            " ON session_tags (tag, updated_at_us, session_id)",
            "CREATE INDEX IF NOT EXISTS session_tags_by_created"
            " ON session_tags (tag, created_at_us, session_id)",
            f"CREATE TRIGGER IF NOT EXISTS session_tags_on_insert AFTER INSERT ON sessions"
            f" WHEN new.tags <> '[]' BEGIN {_TAG_ROWS}; END",
            # Touches of tagged sessions rewrite their few tag rows; untagged ones cost a compare.
            f"CREATE TRIGGER IF NOT EXISTS session_tags_on_update AFTER UPDATE ON sessions"
            f" WHEN new.tags <> '[]' OR old.tags <> '[]' BEGIN"
            f" DELETE FROM session_tags WHERE session_id = old.id; {_TAG_ROWS}; END",
            "CREATE TRIGGER IF NOT EXISTS session_tags_on_delete AFTER DELETE ON sessions"
            " WHEN old.tags <> '[]' BEGIN DELETE FROM session_tags WHERE session_id = old.id; END",
            # Run facts beside the doc (query.run_facts), so SQL filters and adds up runs
            # without parsing JSON; agent_id is the run's session's, kept in step by triggers.
            "ALTER TABLE runs ADD COLUMN agent_id TEXT",
            "ALTER TABLE runs ADD COLUMN provider TEXT",
            "ALTER TABLE runs ADD COLUMN model TEXT",
            "ALTER TABLE runs ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE runs ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE runs ADD COLUMN total_tokens INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE runs ADD COLUMN cost_usd REAL",
            "UPDATE runs SET agent_id = (SELECT agent_id FROM sessions WHERE id = runs.session_id)",
            "UPDATE runs SET provider = fact(doc, 0), model = fact(doc, 1),"
            " input_tokens = fact(doc, 2), output_tokens = fact(doc, 3),"
            " total_tokens = fact(doc, 4), cost_usd = fact(doc, 5)",
            "CREATE TRIGGER IF NOT EXISTS runs_agent_on_session_insert AFTER INSERT ON sessions"
            " BEGIN UPDATE runs SET agent_id = new.agent_id WHERE session_id = new.id; END",
            "CREATE TRIGGER IF NOT EXISTS runs_agent_on_session_update"
            " AFTER UPDATE OF agent_id ON sessions WHEN old.agent_id IS NOT new.agent_id"
            " BEGIN UPDATE runs SET agent_id = new.agent_id WHERE session_id = new.id; END",
            "CREATE INDEX IF NOT EXISTS runs_by_started ON runs (started_at_us, id)",
            "CREATE INDEX IF NOT EXISTS runs_by_tokens ON runs (total_tokens, id)",
            "CREATE INDEX IF NOT EXISTS runs_by_agent ON runs (agent_id, started_at_us, id)",
            "CREATE INDEX IF NOT EXISTS runs_by_provider ON runs (provider, started_at_us, id)",
            "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, started_at_us, id)",
            # Usage and cost over every run read this in group order, without the rows.
            "CREATE INDEX IF NOT EXISTS runs_by_group ON runs (provider, model, status,"
            " (cost_usd IS NULL), input_tokens, output_tokens, total_tokens, cost_usd)",
            # search_events: one index per single filter, in the default (timestamp) order;
            # the rarely set columns get partial indexes so other events do not pay for them.
            "CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp_us, id)",
            "CREATE INDEX IF NOT EXISTS events_by_seq ON events (seq, id)",
            "CREATE INDEX IF NOT EXISTS events_by_session_time"
            " ON events (session_id, timestamp_us, id)",
            "CREATE INDEX IF NOT EXISTS events_by_type_time ON events (type, timestamp_us, id)",
            "CREATE INDEX IF NOT EXISTS events_by_run_time ON events (run_id, timestamp_us, id)"
            " WHERE run_id IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS events_by_provider_time"
            " ON events (provider, timestamp_us, id) WHERE provider IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS events_by_correlation_time"
            " ON events (correlation_id, timestamp_us, id) WHERE correlation_id IS NOT NULL",
        ),
    ),
    (
        4,
        (
            # Every append paid for this index, yet it served only sequence_asc across
            # sessions, which is no default ordering (contract 7.8; "meaningful within one
            # session"): one B-tree fewer per event makes each commit write one page fewer.
            # That ordering now sorts what its filters match (one session's stays a walk of
            # the primary key).
            "DROP INDEX IF EXISTS events_by_seq",
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
LAST_SEQ_AND_CHANGE = (
    "SELECT (SELECT last_seq FROM seqs WHERE session_id = ?),"
    " (SELECT coalesce(max(change), 0) FROM seqs)"
)


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


@lru_cache(maxsize=4)
def _facts(doc: str) -> tuple[str | int | float | None, ...]:
    f = run_facts(decode_run(doc))
    return (f.provider, f.model, f.input_tokens, f.output_tokens, f.total_tokens, f.cost_usd)


def _fact(doc: str, index: int) -> str | int | float | None:
    """One of a stored run's facts (query.run_facts), for the version 3 backfill."""
    return _facts(doc)[index]


def migrate(db: Database, conn: sqlite3.Connection) -> None:
    """Apply the missing steps in one write transaction: safe when processes race."""
    use_wal(db, conn)
    conn.create_function("iso_micros", 1, _iso_micros, deterministic=True)
    conn.create_function("fact", 2, _fact, deterministic=True)

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
