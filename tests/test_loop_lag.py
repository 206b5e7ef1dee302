"""No single call holds the event loop for long, whatever the batch or payload (issue 13).

What is measured is the CPU time the event loop's thread spends between two runs of a
ticker task while the call runs: the longest stretch of work done on the loop in one go.
CPU time, not wall time: waiting for the GIL or for a core on a loaded machine does not
count, so the figure depends on the code, not on the machine's load. The garbage collector
is held off during the call (a full collection's pause is the process's, not the call's).
"""

from __future__ import annotations

import asyncio
import gc
import random
import string
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agent_session_store import Event, EventType, InMemorySessionStore

#: Loop-thread CPU one step may take: the goal's 20 ms. Per-row Python work on a 20,000-event
#: batch or page, or decoding 12 MB, costs 40-200 ms of it; what is left on the loop runs at
#: C speed.
BAR_MS = 20.0
#: Where the driver itself still works on the loop, its part measured on this machine; the
#: bar is loose enough for it and still fails if our per-row or per-payload work comes back.
DRIVER_MS = {
    # asyncpg builds and sends the 6 MB bind message on the loop (about 18 ms)
    ("postgres", "batch"): 45.0,
    # redis-py packs the 20,000-argument EVALSHA on the loop (about 35 ms)
    ("redis", "batch"): 60.0,
    # asyncpg / redis-py copy a 12 MB value through their buffers on the loop (about 25 ms)
    ("postgres", "large"): 45.0,
    ("postgres", "readlarge"): 45.0,
    ("redis", "large"): 45.0,
}
BACKENDS = ["memory", "sqlite", "postgres", "redis"]
_ALPHA = string.ascii_letters + string.digits + "     .,"


async def loop_cpu_ms(work: Callable[[], Awaitable[Any]]) -> tuple[float, int]:
    """The most loop-thread CPU (ms) between two ticks while ``work`` ran, and the ticks."""
    stop = False
    worst = 0.0
    ticks = 0

    async def ticker() -> None:
        nonlocal worst, ticks
        last = time.thread_time()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.thread_time()
            worst = max(worst, now - last)
            last = now
            ticks += 1

    gc.collect()
    gc.disable()
    try:
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.005)
        worst = 0.0
        await work()
        stop = True
        await task
    finally:
        gc.enable()
    return worst * 1e3, ticks


def _check(backend: str, case: str, worst: float) -> None:
    bar = DRIVER_MS.get((backend, case), BAR_MS)
    assert worst < bar, f"{backend} {case}: one loop step took {worst:.1f} ms of CPU (bar {bar})"


def _batch(n: int, session_id: str) -> list[Event]:
    rng = random.Random(3)
    return [
        Event(
            type=EventType.MESSAGE_RECEIVED,
            session_id=session_id,
            data={"role": "assistant", "content": "".join(rng.choices(_ALPHA, k=250))},
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_20k_event_batch_does_not_hold_the_loop(
    open_backend: Callable[[str], Any], backend: str
) -> None:
    store = await open_backend(backend)
    events = _batch(20_000, "big")
    await store.append_event(_batch(1, "warm")[0])  # connections and threads exist
    stored: list[Event] = []

    async def work() -> None:
        stored.extend(await store.append_events(events))

    worst, ticks = await loop_cpu_ms(work)
    assert len(stored) == 20_000 and stored[-1].sequence_number == 20_000
    assert ticks > 1, "the loop never ran while the batch was written"
    _check(backend, "batch", worst)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_20k_event_page_does_not_hold_the_loop(
    open_backend: Callable[[str], Any], backend: str
) -> None:
    store = await open_backend(backend)
    events = _batch(20_000, "big")
    await store.append_events(events)
    page: list[Event] = []

    async def read() -> None:
        page.extend(await store.get_events("big"))

    worst, _ = await loop_cpu_ms(read)
    assert len(page) == 20_000 and page[-1].data == events[-1].data
    _check(backend, "read", worst)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_12mb_event_does_not_hold_the_loop(
    open_backend: Callable[[str], Any], backend: str
) -> None:
    store = await open_backend(backend)
    await store.append_event(_batch(1, "warm")[0])
    event = Event(type=EventType.MESSAGE_RECEIVED, session_id="l", data={"c": "x" * 12_000_000})
    worst, _ = await loop_cpu_ms(lambda: store.append_event(event))
    _check(backend, "large", worst)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_reading_a_12mb_event_does_not_hold_the_loop(
    open_backend: Callable[[str], Any], backend: str
) -> None:
    store = await open_backend(backend)
    event = Event(type=EventType.MESSAGE_RECEIVED, session_id="l", data={"c": "x" * 12_000_000})
    await store.append_event(event)
    got: list[Event] = []

    async def read() -> None:
        got.extend(await store.get_events("l"))

    worst, _ = await loop_cpu_ms(read)
    assert got[0].data == event.data
    _check(backend, "readlarge", worst)


async def test_readers_never_see_part_of_a_large_memory_batch() -> None:
    """The batch is prepared in a thread while readers run; they see none of it or all."""
    async with InMemorySessionStore() as store:
        task = asyncio.create_task(store.append_events(_batch(5_000, "s")))
        seen: set[int] = set()
        while not task.done():
            seen.add(len(await store.get_events("s")))
            await asyncio.sleep(0)
        await task
        seen.add(len(await store.get_events("s")))
    assert seen <= {0, 5_000} and 5_000 in seen


async def test_a_large_memory_batch_is_numbered_after_appends_made_meanwhile() -> None:
    """Other appends to the session land while the batch is prepared: it is renumbered."""
    async with InMemorySessionStore() as store:
        events = _batch(20_000, "s")
        task = asyncio.create_task(store.append_events(events))
        singles: list[Event] = []
        while not task.done():
            singles.append(await store.append_event_with_sequence(_batch(1, "s")[0]))
            await asyncio.sleep(0)
        stored = await task
        log = await store.get_events("s")
        typed = await store.get_events("s", type=EventType.MESSAGE_RECEIVED)
    assert [e.sequence_number for e in log] == list(range(1, len(log) + 1))
    numbers = [e.sequence_number for e in stored]
    assert numbers == list(range(numbers[0], numbers[0] + 20_000))  # in one piece
    assert [e.id for e in stored] == [e.id for e in events]
    at = {e.id: e.sequence_number for e in log}
    assert [at[e.id] for e in stored] == numbers  # what it returned is where it is
    assert len(log) == 20_000 + len(singles)
    assert [e.sequence_number for e in typed] == [e.sequence_number for e in log]
