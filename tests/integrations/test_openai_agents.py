"""Our OpenAI Agents SDK session on every backend: the protocol, the log it leaves, concurrency.

The SDK's own runner tests run against it in test_openai_sdk_suite.py; these pin down what
theirs cannot see: item kinds as event types, pops as rewinds kept for audit, and two
processes popping one session at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from agents import Agent, Runner, function_tool
from agents.items import TResponseInputItem
from agents.memory import Session as SDKSession
from agents.testing import ScriptedModel, assistant_message, function_call
from olg_backends import BACKENDS, backend

from agent_session_store import open_session_store
from agent_session_store.errors import ValidationError
from agent_session_store.integrations.loop import StoreLoop
from agent_session_store.integrations.openai_agents import OpenAIAgentsSession, item_event_type
from agent_session_store.models import Event, EventType, to_event_type
from agent_session_store.ports import NewestPayloads, SessionStore
from agent_session_store.testing.workers import run_processes

DURABLE = [k for k in BACKENDS if k != "memory"]


def _items(*texts: str) -> list[TResponseInputItem]:
    return [cast(TResponseInputItem, {"role": "user", "content": t}) for t in texts]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend(request.param, tmp_path) as u:
        yield u


@pytest.fixture
async def store(url: str) -> AsyncIterator[SessionStore]:
    async with open_session_store(url) as s:
        yield s


async def test_protocol_round_trip_latest_n_oldest_first(store: SessionStore) -> None:
    session = OpenAIAgentsSession("conv", store)
    assert isinstance(session, SDKSession)
    assert await session.get_items() == []
    await session.add_items(_items("a", "b", "c"))
    await session.add_items(_items("d"))
    await session.add_items([])
    assert [i["content"] for i in await session.get_items()] == ["a", "b", "c", "d"]  # type: ignore[typeddict-item]
    assert [i["content"] for i in await session.get_items(2)] == ["c", "d"]  # type: ignore[typeddict-item]
    assert await session.get_items(0) == []
    assert len(await session.get_items(100)) == 4
    limited = OpenAIAgentsSession("conv", store, session_settings={"limit": 3})
    assert [i["content"] for i in await limited.get_items()] == ["b", "c", "d"]  # type: ignore[typeddict-item]
    assert len(await limited.get_items(1)) == 1


async def test_each_item_kind_is_its_own_event_type(store: SessionStore) -> None:
    items: list[dict[str, Any]] = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Sun"}],
        },
        {"type": "reasoning", "id": "r1", "summary": []},
    ]
    session = OpenAIAgentsSession("kinds", store)
    await session.add_items(cast(list[TResponseInputItem], items))
    logged = await store.get_events("kinds")
    assert [e.type.value for e in logged] == [
        "openai.message",
        "openai.function_call",
        "openai.function_call_output",
        "openai.message",
        "openai.reasoning",
    ]
    assert [e.sequence_number for e in logged] == [1, 2, 3, 4, 5]
    assert await store.get_events("kinds", type="openai.function_call") == [logged[1]]
    assert await session.get_items() == items
    record = await store.get_session("kinds")
    assert record.agent_id == "openai-agents"
    odd = cast(TResponseInputItem, {"type": "Weird-Kind!"})
    assert item_event_type(odd) == "openai.weird_kind"
    # an empty type is named by the role, item by item (types are remembered per kind)
    blank: list[dict[str, Any]] = [{"type": "", "role": "user", "content": "x"}, {"type": ""}]
    await session.add_items(cast(list[TResponseInputItem], blank))
    tail = await store.get_events("kinds", after=5)
    assert [e.type.value for e in tail] == ["openai.message", "openai.item"]


async def test_pop_item_rewinds_and_keeps_the_item_for_audit(store: SessionStore) -> None:
    session = OpenAIAgentsSession("pop", store)
    assert await session.pop_item() is None
    await session.add_items(_items("a", "b", "c"))
    popped = await session.pop_item()
    assert popped == {"role": "user", "content": "c"}
    assert [i["content"] for i in await session.get_items()] == ["a", "b"]  # type: ignore[typeddict-item]
    assert [i["content"] for i in await session.get_items(1)] == ["b"]  # type: ignore[typeddict-item]
    await session.add_items(_items("d"))
    assert await session.pop_item() == {"role": "user", "content": "d"}
    assert await session.pop_item() == {"role": "user", "content": "b"}
    assert [i["content"] for i in await session.get_items()] == ["a"]  # type: ignore[typeddict-item]
    raw = await store.get_events("pop")
    # nothing deleted: the three pops are rewinds, every item is still in the log
    assert [e.type.value for e in raw] == [
        "openai.message",
        "openai.message",
        "openai.message",
        "history_rewound",
        "openai.message",
        "history_rewound",
        "history_rewound",
    ]
    assert raw[3].data == {"to_sequence": 2}
    assert raw[3].metadata["popped_event_id"] == raw[2].id


async def test_clear_session_rewinds_everything_or_deletes(store: SessionStore) -> None:
    session = OpenAIAgentsSession("clear", store)
    await session.clear_session()  # empty: nothing to write
    assert await store.get_latest_sequence("clear") == 0
    await session.add_items(_items("a", "b"))
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None
    assert len(await store.get_events("clear")) == 3  # kept for audit
    await session.add_items(_items("c"))
    assert await session.get_items() == [{"role": "user", "content": "c"}]

    deleting = OpenAIAgentsSession("gone", store, clear_deletes=True)
    await deleting.add_items(_items("x"))
    await deleting.clear_session()
    assert await store.get_events("gone") == []
    assert await store.get_latest_sequence("gone") == 0


async def test_other_writers_events_are_not_items(store: SessionStore) -> None:
    session = OpenAIAgentsSession("shared", store)
    await session.add_items(_items("a"))
    for _ in range(5):
        await store.append_event(Event(type=EventType.TOKEN_USAGE_UPDATED, session_id="shared"))
    await session.add_items(_items("b"))
    await store.append_event(Event(type=to_event_type("myapp.note"), session_id="shared"))
    assert [i["content"] for i in await session.get_items(2)] == ["a", "b"]  # type: ignore[typeddict-item]
    assert await session.pop_item() == {"role": "user", "content": "b"}
    assert await session.get_items() == [{"role": "user", "content": "a"}]


async def test_bad_item_is_a_validation_error_and_writes_nothing(store: SessionStore) -> None:
    session = OpenAIAgentsSession("bad", store)
    good = {"role": "user", "content": "fine"}
    bad = {"role": "user", "content": b"bytes are not JSON"}
    with pytest.raises(ValidationError):
        await session.add_items(cast(list[TResponseInputItem], [good, bad]))
    assert await store.get_latest_sequence("bad") == 0
    with pytest.raises(ValidationError):
        OpenAIAgentsSession("", store)


async def test_a_second_adapter_object_reads_what_the_first_wrote(url: str) -> None:
    if url.startswith("memory"):
        pytest.skip("two memory stores are two databases")
    first = OpenAIAgentsSession.from_url("conv", url)
    second = OpenAIAgentsSession.from_url("conv", url)
    try:
        await first.add_items(_items("hello"))
        assert await second.get_items() == [{"role": "user", "content": "hello"}]
        assert await second.pop_item() == {"role": "user", "content": "hello"}
        assert await first.get_items() == []
    finally:
        await first.close()
        await second.close()


async def test_concurrent_pops_in_one_process_pop_distinct_items(store: SessionStore) -> None:
    await OpenAIAgentsSession("race", store).add_items(_items(*[str(i) for i in range(40)]))
    sessions = [OpenAIAgentsSession("race", store) for _ in range(4)]

    async def drain(s: OpenAIAgentsSession) -> list[Any]:
        out = []
        while (item := await s.pop_item()) is not None:
            out.append(item["content"])  # type: ignore[typeddict-item]
        return out

    results = await asyncio.gather(*(drain(s) for s in sessions))
    popped = [c for r in results for c in r]
    assert sorted(popped, key=int) == [str(i) for i in range(40)]


@pytest.mark.parametrize("kind", DURABLE)
def test_two_processes_popping_never_pop_the_same_item(kind: str, tmp_path: Path) -> None:
    """Each item is popped by exactly one of two processes racing on one session."""
    count = 60
    with backend(kind, tmp_path) as u:

        async def seed() -> None:
            async with open_session_store(u) as s:
                await OpenAIAgentsSession("race", s).add_items(
                    _items(*[str(i) for i in range(count)])
                )

        asyncio.run(seed())
        import olg_workers

        a, b = run_processes(olg_workers.pop_until_empty, [(u, "race"), (u, "race")])
        popped = [i["content"] for i in a + b]
        assert len(popped) == len(set(popped)) == count

        async def check() -> list[Any]:
            async with open_session_store(u) as s:
                assert await OpenAIAgentsSession("race", s).get_items() == []
                rewinds: list[Any] = await s.get_events("race", type=EventType.HISTORY_REWOUND)
                return rewinds

        assert len(asyncio.run(check())) == count  # one rewind per pop, no more


async def test_a_real_runner_conversation_persists_through_the_session(url: str) -> None:
    @function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    model = ScriptedModel(
        [
            [function_call("weather", {"city": "Paris"}, call_id="call-1")],
            [assistant_message("It is sunny in Paris.")],
            [assistant_message("You asked about Paris.")],
        ]
    )
    agent = Agent(name="assistant", model=model, tools=[weather])
    runner = StoreLoop.in_thread(url)
    try:
        session = OpenAIAgentsSession("trip", runner)
        first = await Runner.run(agent, "Weather in Paris?", session=session)
        assert first.final_output == "It is sunny in Paris."
        # a fresh session object (another worker, say) continues the same conversation
        again = OpenAIAgentsSession("trip", runner)
        second = await Runner.run(agent, "What did I ask?", session=again)
        assert second.final_output == "You asked about Paris."
        last_input = model.last_call
        assert last_input is not None
        kinds = [e.type.value for e in await runner.run(lambda: runner.store.get_events("trip"))]
        assert kinds == [
            "openai.message",
            "openai.function_call",
            "openai.function_call_output",
            "openai.message",
            "openai.message",
            "openai.message",
        ]
    finally:
        runner.close()


def test_sync_runner_across_loops_shares_one_store(url: str) -> None:
    """``Runner.run_sync`` makes a loop per call; a StoreLoop store serves them all."""
    model = ScriptedModel([[assistant_message("one")], [assistant_message("two")]])
    agent = Agent(name="a", model=model)
    session = OpenAIAgentsSession.from_url("sync", url)
    try:
        assert Runner.run_sync(agent, "first", session=session).final_output == "one"
        assert Runner.run_sync(agent, "second", session=session).final_output == "two"
        assert len(asyncio.run(session.get_items())) == 4
    finally:
        asyncio.run(session.close())


async def test_get_items_of_a_plain_tail_is_one_read(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No rewind near the tail: get_items(limit) is one read of the newest rows, whatever
    the session holds; a rewind among them takes the visible-history walk instead."""
    session = OpenAIAgentsSession("conv", store)
    await session.add_items(_items(*(f"m{i}" for i in range(30))))
    reads: list[str] = []
    for name in ("get_newest_payloads", "get_events", "get_visible_events"):
        real = getattr(store, name)

        def counted(*a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            reads.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(store, name, counted)
    got = await session.get_items(5)
    assert [i["content"] for i in got] == [f"m{i}" for i in range(25, 30)]  # type: ignore[typeddict-item]
    assert reads == ["get_newest_payloads"]
    reads.clear()
    await session.pop_item()
    reads.clear()
    got = await session.get_items(5)
    assert [i["content"] for i in got] == [f"m{i}" for i in range(24, 29)]  # type: ignore[typeddict-item]
    assert reads[0] == "get_newest_payloads" and "get_visible_events" in reads


class _ForeignStore:
    """A store that is only a ``SessionStore`` (someone else's): everything but the narrow
    read of ours."""

    def __init__(self, inner: SessionStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "get_newest_payloads":
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_a_store_without_the_narrow_read_is_read_with_get_events(
    store: SessionStore,
) -> None:
    foreign = cast(SessionStore, _ForeignStore(store))
    assert not isinstance(foreign, NewestPayloads) and isinstance(store, NewestPayloads)
    session = OpenAIAgentsSession("conv", foreign)
    await session.add_items(_items("a", "b", "c"))
    assert [i["content"] for i in await session.get_items(2)] == ["b", "c"]  # type: ignore[typeddict-item]
    await session.pop_item()
    assert [i["content"] for i in await session.get_items(2)] == ["a", "b"]  # type: ignore[typeddict-item]
