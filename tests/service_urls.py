"""Where the test servers are: the one place every test module takes them from.

``scripts/ensure-services.sh`` (``make services``) writes ``.services/env`` with
``ASS_TEST_PG_DSN`` and ``ASS_TEST_REDIS_URL``, pointing at the machine's servers or, when
those do not fit, at servers of its own on free ports; ``make test`` exports that file. The
defaults are the machine's servers (PostgreSQL 127.0.0.1:5432 user postgres database test,
Redis 127.0.0.1:6379 db 0).
"""

from __future__ import annotations

import os
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = ["PG_DSN", "REDIS_URL", "pg_dsn", "redis_host_port"]

PG_DSN = os.environ.get("ASS_TEST_PG_DSN") or "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("ASS_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


def pg_dsn(
    *,
    scheme: str | None = None,
    user: str | None = None,
    password: str | None = None,
    database: str | None = None,
) -> str:
    """``PG_DSN`` on the same server with another scheme, role, password or database (for
    the tests of wrong credentials, a missing database and redaction)."""
    parts = urlsplit(PG_DSN)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port or 5432}"
    role = user if user is not None else (parts.username or "")
    secret = password if password is not None else parts.password
    if role or secret is not None:
        auth = quote(role, safe="")
        if secret is not None:
            auth += ":" + quote(secret, safe="")
        netloc = f"{auth}@{netloc}"
    path = "/" + (database if database is not None else parts.path.lstrip("/"))
    return urlunsplit((scheme or parts.scheme, netloc, path, parts.query, ""))


def redis_host_port() -> tuple[str, int]:
    """The host and port of ``REDIS_URL``."""
    parts = urlsplit(REDIS_URL)
    return parts.hostname or "127.0.0.1", parts.port or 6379
