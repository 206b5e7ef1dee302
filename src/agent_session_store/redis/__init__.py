"""Redis session store, single node or Redis Cluster (``redis://``, ``rediss://``,
``redis+cluster://``), on redis-py's asyncio client. docs/redis.md describes it whole.

Layout of this package:

- ``store.py``: ``RedisSessionStore`` (options, connections, errors, reads, long-poll)
- ``single.py`` / ``cluster.py``: the write paths of one server / of a cluster
- ``plan.py``: builds one call of the write script; ``keys.py``: key names; ``rows.py``: how
  an event row is spelled
- ``lua/*.lua`` (loaded by ``scripts.py``): every server-side step; ``subscriber.py``:
  long-poll wake-ups
"""

try:
    import redis  # noqa: F401 - checked here so every submodule import reports it by name
except ImportError as _missing:  # exercised by tests/test_imports.py without the extra
    from ..urls import missing_extra

    raise missing_extra("redis", "the redis:// backend", _missing) from _missing

from .store import RedisSessionStore

__all__ = ["RedisSessionStore"]
