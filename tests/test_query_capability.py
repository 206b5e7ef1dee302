"""Whether a store answers contract 7 is a typed signal (``querying.supports_query``), not the
text of an error: the server and the CLI fall back on it."""

from __future__ import annotations

from typing import Any

import pytest

from agent_session_store import QueryNotImplementedError, open_artifact_store
from agent_session_store.composite import CompositeSessionStore
from agent_session_store.memory import InMemorySessionStore
from agent_session_store.ports import SessionStore
from agent_session_store.querying import QUERY_PRIMITIVES, QueryAndMaintenance, supports_query


class NotYet(InMemorySessionStore):
    """A backend on the shared base that has not implemented the query primitives yet."""


for _name in QUERY_PRIMITIVES:
    setattr(NotYet, _name, getattr(QueryAndMaintenance, _name))


class SessionOnly:
    """Implements SessionStore and nothing of contract 7."""

    _NAMES = frozenset(n for n in dir(SessionStore) if not n.startswith("_"))

    def __init__(self, inner: SessionStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name not in self._NAMES:
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_built_in_store_supports_query() -> None:
    async with InMemorySessionStore() as store:
        assert store.implements_query is True
        assert supports_query(store)
        assert not supports_query(SessionOnly(store))


async def test_backend_without_primitives_says_so_and_raises_typed() -> None:
    async with NotYet() as store:
        assert store.implements_query is False
        assert not supports_query(store)
        with pytest.raises(QueryNotImplementedError) as info:
            await store.search_sessions(limit=1)
        assert info.value.code == "storage_error"  # contract 7: the code stays
        assert info.value.details == {"reason": "not_implemented"}


async def test_composite_answers_as_its_session_store() -> None:
    async with open_artifact_store("memory://") as artifacts:
        for inner, expected in ((InMemorySessionStore(), True), (NotYet(), False)):
            composite = CompositeSessionStore(inner, artifacts, owns=False)
            assert composite.implements_query is expected
            assert supports_query(composite) is expected
