"""The PostgreSQL schema: numbered table migrations plus the current server-side functions.

The SQL lives in ``sql/`` next to this module (shipped in the wheel, read with
``importlib.resources``): ``NNN_*.sql`` are the table migrations, forward-only (a released
one is never edited; a change is a new file with the next number), and ``functions.sql`` holds
the current functions, installed after the migrations whenever one was applied.
"""

from __future__ import annotations

import hashlib
import logging
import re
from importlib import resources
from typing import Any

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "apply_migrations",
    "channel_for",
    "quote_ident",
    "quote_literal",
]

log = logging.getLogger("agent_session_store.postgres")

# version -> what it brings (recorded in <schema>.schema_migrations); the file is NNN_*.sql
_NAMES = {
    1: "sessions, runs, events, counters and the append functions",
    2: "updated_at kept by the store, conditional append, import, one lock order",
    3: "query and retention columns and indexes (contract 7, 8)",
    4: "appends NOTIFY after their commit (append_call, flush_call)",
    5: "wake-up payloads saying what each append brought (long-poll)",
    6: "the append path keeps one generic plan, pinned to index probes",
    7: "the wake-up NOTIFY keeps its plan (PL/pgSQL)",
}


_PACKAGE = "agent_session_store.postgres"


def _sql(name: str) -> str:
    return (resources.files(_PACKAGE) / "sql" / name).read_text(encoding="utf-8")


def _migrations() -> list[tuple[int, str, str]]:
    files = sorted(
        f.name for f in (resources.files(_PACKAGE) / "sql").iterdir() if f.name[:3].isdigit()
    )
    found = [(int(name[:3]), name) for name in files]
    if [v for v, _ in found] != list(range(1, len(found) + 1)) or len(found) != len(_NAMES):
        raise AssertionError(f"postgres migrations are not numbered 1..n with names: {files}")
    return [(v, _NAMES[v], _sql(name)) for v, name in found]


# (version, name, table SQL) in order; ``{s}`` is the quoted schema name.
MIGRATIONS: list[tuple[int, str, str]] = _migrations()
SCHEMA_VERSION = MIGRATIONS[-1][0]
FUNCTIONS = _sql("functions.sql")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def channel_for(schema: str) -> str:
    """One NOTIFY channel per schema; identifiers are capped at 63 bytes, so hash long ones."""
    channel = f"ass_events.{schema}"
    if len(channel.encode()) > 63:
        channel = "ass_events." + hashlib.md5(schema.encode()).hexdigest()
    return channel


def _lock_key(schema: str) -> int:
    """A signed 64-bit advisory-lock key for migrating this schema."""
    digest = hashlib.sha256(f"agent_session_store.migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_PLACEHOLDER = re.compile(r"\{(s|channel)\}")


def render(sql: str, schema: str) -> str:
    """Fill in ``{s}`` and ``{channel}`` (plain text substitution: SQL has braces of its own)."""
    values = {"s": quote_ident(schema), "channel": quote_literal(channel_for(schema))}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], sql)


async def apply_migrations(conn: Any, schema: str) -> list[int]:
    """Bring ``schema`` to SCHEMA_VERSION in one transaction; returns the versions applied.

    Safe from many processes at once: everything, even CREATE SCHEMA IF NOT EXISTS, runs under
    a transaction-level advisory lock (two concurrent IF NOT EXISTS can still collide in the
    catalog); whoever comes second finds nothing to do.
    """
    s = quote_ident(schema)
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval(f"SELECT max(version) FROM {s}.schema_migrations")
        for version, name, sql in MIGRATIONS:
            if current is not None and version <= current:
                continue
            await conn.execute(render(sql, schema))
            await conn.execute(
                f"INSERT INTO {s}.schema_migrations (version, name) VALUES ($1, $2)",
                version,
                name,
            )
            applied.append(version)
            log.info("migrated schema %s to version %s", schema, version)
        if applied:
            await conn.execute(render(FUNCTIONS, schema))
    return applied
