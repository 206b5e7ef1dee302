"""PostgreSQL session store: many worker processes on many hosts against one database.

``store`` holds the store class, ``schema`` the migrations (SQL in ``sql/``), ``faults`` how
driver failures map to error codes. Everything needs the ``postgres`` extra (asyncpg).
"""

from __future__ import annotations

try:
    import asyncpg  # noqa: F401 - checked here so every submodule import reports it by name
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    from ..errors import DependencyNotAvailableError

    raise DependencyNotAvailableError(
        "the postgresql:// backend needs the 'postgres' extra: "
        "pip install 'agent-session-store[postgres]'",
        details={"extra": "postgres"},
    ) from _missing

from .schema import MIGRATIONS, SCHEMA_VERSION
from .store import DEFAULT_SCHEMA, PostgresSessionStore

__all__ = ["DEFAULT_SCHEMA", "MIGRATIONS", "SCHEMA_VERSION", "PostgresSessionStore"]
