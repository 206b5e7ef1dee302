"""PostgreSQL session store: many worker processes on many hosts against one database.

``store`` holds the store class, ``schema`` the migrations (SQL in ``sql/``), ``faults`` how
driver failures map to error codes. Everything needs the ``postgres`` extra (asyncpg).
"""

from __future__ import annotations

try:
    import asyncpg  # noqa: F401 - checked here so every submodule import reports it by name
except ImportError as _missing:  # exercised by tests/test_imports.py without the extra
    from ..urls import missing_extra

    raise missing_extra("postgres", "the postgresql:// backend", _missing) from _missing

from .schema import MIGRATIONS, SCHEMA_VERSION
from .store import DEFAULT_SCHEMA, PostgresSessionStore

__all__ = ["DEFAULT_SCHEMA", "MIGRATIONS", "SCHEMA_VERSION", "PostgresSessionStore"]
