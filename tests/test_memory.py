"""The in-memory backend against the shared contract."""

from __future__ import annotations

import pytest

from agent_session_store.testing import SessionStoreContract


class TestInMemorySessionStore(SessionStoreContract):
    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"
