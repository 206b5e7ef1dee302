"""A pytest plugin for the OpenAI Agents SDK's OWN test suite (from its sdist, never committed).

Their runner tests keep conversation history in ``tests/utils/simple_session.py``'s
``SimpleListSession`` (and its ``CountingSession`` / ``IdStrippingSession`` subclasses). This
plugin swaps those three classes, before any of their test modules is imported, for
subclasses of our ``OpenAIAgentsSession`` on the backend named by ``OLG_BACKEND``, so every
history read and write of those tests goes through our adapter and a real store.

The store lives on a ``StoreLoop`` thread: their tests create loops of their own (per test,
``asyncio.run``, ``Runner.run_sync``) and read ``session.saved_items`` synchronously, which is
exactly the situation ``StoreLoop`` is for. Every SDK session gets its own store session.

``OLG_REPORT`` names a JSON file that receives the counts: tests run, passed, failed, and how
many of them built at least one of our sessions.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from agents.items import TResponseInputItem

from agent_session_store.integrations.loop import StoreLoop
from agent_session_store.integrations.openai_agents import OpenAIAgentsSession

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/: service_urls
from olg_backends import backend_url, drop, fresh_name

#: Fail with their own SimpleListSession too: newer ``openai`` than their lock file adds a
#: ``cache_write_tokens_details`` key to usage (nothing to do with sessions).
KNOWN_UNRELATED = ("test_stream_span_is_recorded_for_a_consumer_that_stops_at_the_terminal_event",)

_state: dict[str, Any] = {
    "runner": None,
    "created": 0,
    "tests": {},  # nodeid -> outcome
    "used": set(),  # nodeids that built one of our sessions
    "current": None,
}


class SimpleListSession(OpenAIAgentsSession):
    """Their reference session's constructor and test hooks, our storage underneath."""

    def __init__(
        self, session_id: str = "test", history: list[TResponseInputItem] | None = None
    ) -> None:
        runner = cast(StoreLoop, _state["runner"])
        super().__init__(
            session_id, runner, store_session_id=f"{session_id}~{uuid.uuid4().hex[:12]}"
        )
        self._ignore_ids_for_matching = False
        _state["created"] += 1
        if _state["current"] is not None:
            _state["used"].add(_state["current"])
        if history:
            items = list(history)
            runner.run_sync(lambda: self._append([self._event(i) for i in items]))

    @property
    def saved_items(self) -> list[TResponseInputItem]:
        """What the store holds now (their tests inspect it synchronously)."""
        runner = cast(StoreLoop, _state["runner"])
        return runner.run_sync(lambda: self._read_items(None))

    @property
    def _items(self) -> list[TResponseInputItem]:
        return self.saved_items


class CountingSession(SimpleListSession):
    def __init__(
        self, session_id: str = "test", history: list[TResponseInputItem] | None = None
    ) -> None:
        super().__init__(session_id=session_id, history=history)
        self.pop_calls = 0

    async def pop_item(self) -> TResponseInputItem | None:
        self.pop_calls += 1
        return await super().pop_item()


class IdStrippingSession(CountingSession):
    def __init__(
        self, session_id: str = "test", history: list[TResponseInputItem] | None = None
    ) -> None:
        super().__init__(session_id=session_id, history=history)
        self._ignore_ids_for_matching = True

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        sanitized: list[TResponseInputItem] = []
        for item in items:
            if isinstance(item, dict):
                clean = dict(item)
                clean.pop("id", None)
                sanitized.append(cast(TResponseInputItem, clean))
            else:
                sanitized.append(item)
        await super().add_items(sanitized)


def pytest_configure(config: pytest.Config) -> None:
    kind = os.environ.get("OLG_BACKEND", "memory")
    name = fresh_name()
    tmp = Path(tempfile.mkdtemp(prefix="olg-sdk-"))
    _state.update(kind=kind, name=name, runner=StoreLoop.in_thread(backend_url(kind, name, tmp)))
    import tests.utils.simple_session as theirs  # type: ignore[import-not-found]  # their tree

    for cls in (SimpleListSession, CountingSession, IdStrippingSession):
        setattr(theirs, cls.__name__, cls)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept = [i for i in items if not any(k in i.nodeid for k in KNOWN_UNRELATED)]
    config.hook.pytest_deselected(items=[i for i in items if i not in kept])
    items[:] = kept


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _state["current"] = item.nodeid


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        previous = _state["tests"].get(report.nodeid)
        if previous in (None, "passed"):
            _state["tests"][report.nodeid] = report.outcome


def pytest_unconfigure(config: pytest.Config) -> None:
    runner = _state.get("runner")
    if runner is not None:
        runner.close()
        drop(_state["kind"], _state["name"])
    target = os.environ.get("OLG_REPORT")
    if target:
        outcomes = list(_state["tests"].values())
        used = _state["used"]
        summary = {
            "backend": _state.get("kind"),
            "tests": len(outcomes),
            "passed": outcomes.count("passed"),
            "failed": outcomes.count("failed"),
            "skipped": outcomes.count("skipped"),
            "using_our_session": len(used),
            "using_our_session_passed": sum(1 for n in used if _state["tests"].get(n) == "passed"),
            "sessions_created": _state["created"],
            "failures": sorted(n for n, o in _state["tests"].items() if o == "failed"),
        }
        Path(target).write_text(json.dumps(summary, indent=1))
