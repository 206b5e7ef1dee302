"""SQLite session store: the embedded default, one database file shared by any number of processes.

Read the modules in this order:

* ``connection`` — the file: how each thread connects, waits out a busy lock, names errors.
* ``schema`` — tables and indexes (``MIGRATIONS``), schema versions, the checks made on open.
* ``writer`` — the writer thread: one write connection, group commit of queued requests.
* ``writes`` — the write work each request does inside the group's transaction.
* ``reads`` and ``readers`` — the read statements, and the pool of reader threads running them.
* ``queries`` — searches, summaries and retention (contract 7, 8), each walking an index.
* ``watcher`` — long-poll readers woken by commits made in other processes.
* ``store`` — ``SQLiteSessionStore``: each operation handed to the writer or to the readers.

Nothing blocking runs on the event loop: results come back through ``call_soon_threadsafe``.
"""

from .reads import events_sql, sessions_sql
from .schema import MIGRATIONS, SCHEMA_VERSION
from .store import SQLiteSessionStore

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteSessionStore", "events_sql", "sessions_sql"]
