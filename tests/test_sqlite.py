"""The SQLite backend against the shared contract, plus what only SQLite has."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_session_store.testing import DurableSessionStoreContract


class TestSQLiteSessionStore(DurableSessionStoreContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/s.db?auto_migrate=true"
