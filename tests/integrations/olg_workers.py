"""Child-process bodies for the OpenAI Agents and LangGraph adapter tests (spawned, so each
opens its own store from the URL like a separate worker of an application)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from typing import Any

from agent_session_store.testing.workers import _wait
from agent_session_store.urls import open_session_store


async def pop_until_empty(barrier: Barrier, url: str, session_id: str) -> list[Any]:
    """Pop items until the session is empty; return what this process popped."""
    from agent_session_store.integrations.openai_agents import OpenAIAgentsSession

    async with open_session_store(url) as store:
        session = OpenAIAgentsSession(session_id, store)
        await session.get_items(1)  # connections warm before the race starts
        _wait(barrier)
        popped: list[Any] = []
        while (item := await session.pop_item()) is not None:
            popped.append(item)
        return popped
