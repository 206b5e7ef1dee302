"""Event pages the store hands over as JSON (``ports.EventsJSON``, SQLite): the API's bytes
must be those of decoding the page and encoding it again, for every filter, order and page."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent_session_store import (
    CustomEventType,
    Event,
    EventsJSON,
    EventType,
    Session,
    open_session_store,
)
from agent_session_store.artifacts.memory import InMemoryArtifactStore
from agent_session_store.composite import CompositeSessionStore
from agent_session_store.errors import ValidationError
from agent_session_store.memory import InMemorySessionStore
from agent_session_store.ports import SessionStore
from agent_session_store.server import create_app
from agent_session_store.sqlite import SQLiteSessionStore

from .conftest import asgi_client

T0 = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def _event(i: int, **fields: Any) -> Event:
    fields.setdefault("type", EventType.MESSAGE_SENT)
    fields.setdefault("data", {"content": f"m{i}"})
    fields.setdefault("timestamp", T0 + timedelta(seconds=i))
    return Event(session_id="s1", **fields)


#: Each either needs no decoding (the store's JSON is served) or must be found out.
PLAIN = [
    _event(0, data={"k": "é <b>\u2028 ☃ \U0001f600", "q": 'a "quote", a \\ and\na newline'}),
    _event(1, timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # a zero fraction
    _event(2, timestamp=datetime(1, 1, 1, tzinfo=UTC), run_id="r1", provider="openai"),
    _event(3, timestamp=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    _event(4, timestamp=datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)),
    _event(5, timestamp=datetime(999, 5, 6, 7, 8, 9, 10, tzinfo=UTC), correlation_id="c-1"),
    _event(6, data={"f": 1.5, "g": 0.1, "h": 123456789.125, "n": -(2**63), "u": 2**64 - 1}),
    _event(7, metadata={"m": [1, None, True, False], "nested": {"a": {"b": []}}}),
    _event(8, type=EventType.HISTORY_REWOUND, data={"to_sequence": 3}),
    _event(9, type=CustomEventType("myapp.thing"), run_id="r1", data={"s": "back\\u slash"}),
    _event(10, data={"text": "x" * 70_000 + "é"}, run_id="r2"),  # past codec.SLICE
    _event(11, data={}, metadata={}),
]
#: A value whose stored text is not what orjson writes for it again.
SPECIAL = [
    _event(12, data={"big": 2**70}),  # EXACT_MARK: json encodes the page
    _event(13, data={"e": 1e-05, "f": 1e16}),  # json 1e-05, orjson 0.00001
    _event(14, data={"ctl": "\x01\x1f"}, run_id="r2"),  # \u escapes
    _event(15, metadata={"big": -(2**65)}, run_id="r1"),
]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SessionStore]:
    async with open_session_store(f"sqlite:///{tmp_path / 'e.db'}") as s:
        await s.save_session(Session(id="s1", agent_id="a"))
        await s.append_events(PLAIN)
        await s.append_events(SPECIAL)
        await s.append_events([_event(16 + i) for i in range(4)])
        yield s


def _queries() -> list[str]:
    got = ["", "?limit=1000", "?order=desc", "?type=myapp.thing", "?run_id=r1&order=desc"]
    for limit in (1, 3, 5, 12):
        for extra in ("", "&order=desc", "&after=4", "&before=15", "&after=2&before=9"):
            got.append(f"?limit={limit}{extra}")
    for since in ("2026-05-06T07:08:12Z", "1969-12-31T23:59:59.5Z", "0001-01-01T00:00:00Z"):
        got.append(f"?since={since}&limit=4")
    got += ["?type=message_sent&limit=2&order=desc", "?run_id=r2", "?run_id=nobody"]
    return got


async def test_pages_as_the_store_writes_them_are_the_bytes_of_decoding_them(
    store: SessionStore,
) -> None:
    """Every page through the store's JSON and through decoding (the port hidden): the same
    body and status; plain pages never reach get_events, special ones do."""
    assert isinstance(store, SQLiteSessionStore) and isinstance(store, EventsJSON)
    app = create_app(store)
    fast_ctx = app.state.ctx
    assert fast_ctx.events_json is store
    slow_ctx = dataclasses.replace(fast_ctx, events_json=None)
    decoded: list[str] = []
    get_events = store.get_events

    async def counting(*args: Any, **kwargs: Any) -> list[Event]:
        decoded.append(str(kwargs))
        got: list[Event] = await get_events(*args, **kwargs)
        return got

    store.get_events = counting
    served = 0
    async with asgi_client(app) as c:
        for sid in ("s1", "nosuch"):
            for query in _queries():
                url = f"/api/sessions/{sid}/events{query}"
                app.state.ctx = slow_ctx
                want = await c.get(url)
                app.state.ctx = fast_ctx
                before = len(decoded)
                got = await c.get(url)
                assert got.status_code == want.status_code == 200, (url, got.text)
                assert got.content == want.content, url
                served += len(decoded) == before
    assert served >= 20  # most pages came from the store's JSON

    async def decodes(url: str) -> bool:
        before = len(decoded)
        async with asgi_client(app) as c:
            assert (await c.get(url)).status_code == 200
        return len(decoded) > before

    assert not await decodes("/api/sessions/s1/events?limit=12")  # all of PLAIN
    for i in range(len(SPECIAL)):  # each special event alone sends its page to get_events
        assert await decodes(f"/api/sessions/s1/events?after={len(PLAIN) + i}&limit=1")
    assert await decodes("/api/sessions/s1/events?wait_timeout_ms=1&after=100")  # long-poll


async def _same_both_ways(store: SessionStore, url: str) -> int:
    """GET ``url`` through the store's JSON and through decoding (the port hidden): the same
    status and body both ways; returns the status."""
    app = create_app(store)
    fast_ctx = app.state.ctx
    assert fast_ctx.events_json is store
    async with asgi_client(app) as c:
        app.state.ctx = dataclasses.replace(fast_ctx, events_json=None)
        want = await c.get(url)
        app.state.ctx = fast_ctx
        got = await c.get(url)
    assert got.status_code == want.status_code, (url, got.text)
    assert got.content == want.content, url
    return got.status_code


async def test_a_row_damaged_outside_the_package_is_refused_as_get_events_refuses_it(
    tmp_path: Path,
) -> None:
    """Stored texts are checked, not trusted: a page holding a payload that is not JSON is
    answered as the decoding path answers it, never sent inside the page as it is."""
    path = tmp_path / "damaged.db"
    async with open_session_store(f"sqlite:///{path}") as store:
        await store.save_session(Session(id="s1", agent_id="a"))
        await store.append_events([_event(i) for i in range(3)])
        with sqlite3.connect(path) as raw:
            raw.execute("""UPDATE events SET data = '{"content": 1' WHERE seq = 2""")
        raw.close()
        for query in ("", "?order=desc", "?after=1&limit=1", "?limit=1"):
            status = await _same_both_ways(store, f"/api/sessions/s1/events{query}")
            assert (status >= 500) == (query != "?limit=1"), query  # pages with the damaged row


async def test_bad_arguments_are_refused_as_get_events_refuses_them(store: SessionStore) -> None:
    assert isinstance(store, EventsJSON)
    for query in ("?after=-1", "?type=Not%20A%20Type", "?since=yesterday", "?before=-3"):
        assert await _same_both_ways(store, f"/api/sessions/s1/events{query}") == 400, query
    with pytest.raises(ValidationError):
        await store.get_events_json("s1", limit=None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await store.get_events_json("", limit=1)


async def test_composite_passes_the_port_through_when_its_backend_has_it(
    store: SessionStore,
) -> None:
    composite = CompositeSessionStore(store, InMemoryArtifactStore(), owns=False)
    assert isinstance(composite, EventsJSON)
    page = await composite.get_events_json("s1", limit=2)
    assert page is not None and page.size == 2 and page.last_sequence == 2
    assert page == await store.get_events_json("s1", limit=2)  # type: ignore[attr-defined]
    assert create_app(composite).state.ctx.events_json is not None
    # A backend without it: the composite answers None, and get_events is used.
    async with InMemorySessionStore() as memory:
        over_memory = CompositeSessionStore(memory, InMemoryArtifactStore(), owns=False)
        assert await over_memory.get_events_json("s1", limit=2) is None
        await memory.save_session(Session(id="s1", agent_id="a"))
        await memory.append_events(PLAIN[:3])
        async with asgi_client(create_app(over_memory)) as c:
            items = (await c.get("/api/sessions/s1/events")).json()["items"]
            assert [e["id"] for e in items] == [e.id for e in PLAIN[:3]]
