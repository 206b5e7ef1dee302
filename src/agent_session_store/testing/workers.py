"""Code the multi-process contract tests run in child processes.

Children are started with the ``spawn`` method (no inherited threads, locks or connections,
as on macOS and Windows) and open their own store from the URL, exactly as separate worker
processes of an application would.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import traceback
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from typing import Any

from ..errors import StoreError
from ..models import Event, EventType, Run, Session
from ..urls import open_session_store

__all__ = ["run_processes"]


def _child(
    target: Callable[..., Any], barrier: Barrier, out: Any, index: int, args: tuple[Any, ...]
) -> None:
    try:
        result = asyncio.run(target(barrier, *args))
        out.put((index, "ok", result))
    except BaseException as exc:  # reported to the parent, which fails the test
        out.put((index, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_processes(
    target: Callable[..., Any], argsets: list[tuple[Any, ...]], timeout: float = 120.0
) -> list[Any]:
    """Run ``target(barrier, *args)`` in one spawned process per argset; return results in order.

    The barrier lets every child finish its set-up (imports, connections) before any of them
    starts the contended part, so the processes really overlap.
    """
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(argsets))
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(target, barrier, out, i, args), daemon=True)
        for i, args in enumerate(argsets)
    ]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    errors: list[str] = []
    try:
        for _ in procs:
            index, status, value = out.get(timeout=timeout)
            if status == "ok":
                results[index] = value
            else:
                errors.append(f"process {index}: {value}")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    if errors:
        raise AssertionError("a child process failed:\n" + "\n".join(errors))
    return [results[i] for i in range(len(argsets))]


def _wait(barrier: Barrier) -> None:
    barrier.wait(timeout=60)


async def append_one_by_one(
    barrier: Barrier, url: str, session_id: str, count: int, tag: str
) -> list[tuple[str, int]]:
    async with open_session_store(url) as store:
        await store.get_latest_sequence(session_id)  # connect before the race starts
        _wait(barrier)
        out = []
        for i in range(count):
            ev = await store.append_event_with_sequence(
                Event(
                    id=f"evt_{tag}_{i}",
                    type=EventType.MESSAGE_STREAMED,
                    session_id=session_id,
                    data={"writer": tag, "i": i},
                )
            )
            out.append((ev.id, ev.sequence_number or 0))
        return out


async def append_in_batches(
    barrier: Barrier, url: str, session_id: str, batches: int, size: int, tag: str
) -> list[list[tuple[str, int]]]:
    async with open_session_store(url) as store:
        await store.get_latest_sequence(session_id)
        _wait(barrier)
        out = []
        for b in range(batches):
            events = [
                Event(
                    id=f"evt_{tag}_{b}_{i}",
                    type=EventType.MESSAGE_STREAMED,
                    session_id=session_id,
                    data={"writer": tag, "batch": b, "i": i},
                )
                for i in range(size)
            ]
            stored = await store.append_events(events)
            out.append([(e.id, e.sequence_number or 0) for e in stored])
        return out


async def append_shared_ids(
    barrier: Barrier, url: str, session_id: str, ids: list[str], tag: str
) -> list[tuple[str, int, str]]:
    """Every process appends the same ids (with different content) in its own order."""
    async with open_session_store(url) as store:
        await store.get_latest_sequence(session_id)
        _wait(barrier)
        out = []
        for event_id in ids:
            ev = await store.append_event_with_sequence(
                Event(
                    id=event_id,
                    type=EventType.MESSAGE_SENT,
                    session_id=session_id,
                    data={"writer": tag},
                )
            )
            out.append((ev.id, ev.sequence_number or 0, ev.data["writer"]))
        return out


async def flush_some_bad(
    barrier: Barrier, url: str, prefix: str, count: int
) -> list[tuple[str, str]]:
    """Flush ``count`` results; every odd one carries a bad event and must leave nothing."""
    async with open_session_store(url) as store:
        await store.get_latest_sequence(prefix)
        _wait(barrier)
        out = []
        for i in range(count):
            session = Session(id=f"{prefix}_{i}", agent_id="agent")
            run = Run(session_id=session.id, id=f"run_{prefix}_{i}")
            events = [
                Event(type=EventType.RUN_STARTED, session_id=session.id, run_id=run.id)
                for _ in range(5)
            ]
            if i % 2:
                events[3].data["bad"] = b"bytes are not JSON"
            try:
                await store.flush(session, run, events)
                out.append((session.id, "ok"))
            except StoreError as err:
                out.append((session.id, err.code))
        return out


async def append_after_barrier(
    barrier: Barrier, url: str, session_id: str, event_type: str
) -> float:
    """Append one event once the parent's reader is waiting; returns the wall time of it."""
    import time

    async with open_session_store(url) as store:
        await store.get_latest_sequence(session_id)
        _wait(barrier)
        t = time.time()
        await store.append_event(Event(type=EventType(event_type), session_id=session_id))
        return t


async def conditional_rounds(
    barrier: Barrier, url: str, session_id: str, rounds: int, tag: str
) -> list[tuple[str, int, str]]:
    """Each round every process reads the counter, then all append expecting that number."""
    async with open_session_store(url) as store:
        await store.get_latest_sequence(session_id)
        out = []
        for r in range(rounds):
            _wait(barrier)  # the previous round is over everywhere
            latest = await store.get_latest_sequence(session_id)
            _wait(barrier)  # everyone has read before anyone writes
            event = Event(id=f"evt_{tag}_{r}", type=EventType.MESSAGE_SENT, session_id=session_id)
            try:
                await store.append_event(event, expected_sequence=latest)
                out.append(("won", latest, event.id))
            except StoreError as err:
                out.append((err.code, latest, event.id))
        return out


async def conditional_retry(
    barrier: Barrier, url: str, session_id: str, count: int, tag: str
) -> list[tuple[str, int]]:
    """Append ``count`` events with read-then-conditional-append, retrying on conflict."""
    async with open_session_store(url) as store:
        await store.get_latest_sequence(session_id)
        _wait(barrier)
        out = []
        for i in range(count):
            event = Event(id=f"evt_{tag}_{i}", type=EventType.MESSAGE_SENT, session_id=session_id)
            conflicts = 0
            for _ in range(10_000):  # bounded: four writers settle long before this
                latest = await store.get_latest_sequence(session_id)
                try:
                    await store.append_event(event, expected_sequence=latest)
                    break
                except StoreError as err:
                    if err.code != "sequence_conflict":
                        raise
                    conflicts += 1
            else:
                raise AssertionError(f"{tag}: event {i} never got in")
            out.append((event.id, conflicts))
        return out
