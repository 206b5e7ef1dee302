"""The in-memory backend against the shared contract."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from agent_session_store import Event, EventType, InMemorySessionStore, Session
from agent_session_store.testing import SessionStoreContract
from agent_session_store.transfer import SessionExport


class TestInMemorySessionStore(SessionStoreContract):
    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"


# ------------------------------------------------------------ the compact held form (issue 13)

BIG = 2**40  # where ``_event_ids`` stops packing (log, sequence) into one int


def _small_events(start: int, stop: int, sessions: int) -> list[Event]:
    return [
        Event(type=EventType.MESSAGE_STREAMED, session_id=f"s{i % sessions}", data={"i": i})
        for i in range(start, stop)
    ]


async def test_a_held_small_event_costs_at_most_500_bytes() -> None:
    """What the store keeps per event (Python heap, tracemalloc: exact, not RSS): the
    bench's small event, through both append paths (plain loop and a prepared ``_Plan``)."""
    n = 30_000
    gc.collect()
    tracemalloc.start()
    try:
        async with InMemorySessionStore() as store:
            base = tracemalloc.get_traced_memory()[0]
            for start in range(0, n // 2, 1000):  # each batch a new list of new objects
                await store.append_events(_small_events(start, start + 1000, 20))
            for start in range(n // 2, n, 5000):
                await store.append_events(_small_events(start, start + 5000, 20))
            gc.collect()
            held = (tracemalloc.get_traced_memory()[0] - base) / n
            assert len(await store.get_events("s0")) == n // 20
    finally:
        tracemalloc.stop()
    assert held <= 500, f"{held:.0f} B per held event"


async def test_numbers_past_the_packed_bits_keep_their_place() -> None:
    """An import may bring any sequence number: ids past 2**40 are still found, retried,
    imported again and deleted like any other, on the plain and the prepared path."""
    async with InMemorySessionStore() as store:
        await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="first"))
        session = Session(id="g", agent_id="a")
        numbers = (BIG - 1, BIG, 2 * BIG + 5)
        events = [
            Event(id=f"g{n}", type=EventType.MESSAGE_SENT, session_id="g", sequence_number=n)
            for n in numbers
        ]
        export = SessionExport(session, [], events, 2 * BIG + 5)
        assert (await store.import_session(export)).events_imported == 3
        stored = await store.get_events("g")
        assert [e.sequence_number for e in stored] == list(numbers)
        assert (await store.import_session(export)).events_skipped == 3
        again = await store.append_events([e.replace(sequence_number=None) for e in events])
        assert again == stored  # a retry returns what is stored, numbers and all
        elsewhere = await store.append_event_with_sequence(events[2].replace(session_id="first"))
        assert elsewhere == stored[2]
        batch = [Event(type=EventType.MESSAGE_SENT, session_id="g") for _ in range(1100)]
        out = await store.append_events([*batch, events[0].replace(sequence_number=None)])
        assert [e.sequence_number for e in out[:1100]] == list(range(2 * BIG + 6, 2 * BIG + 1106))
        assert out[1100] == stored[0]
        assert await store.get_events("g", after=2 * BIG + 1104) == [out[1099]]
        await store.delete_session("g")
        moved = await store.append_event_with_sequence(events[1].replace(session_id="first"))
        assert moved.sequence_number == 2 and moved.session_id == "first"
