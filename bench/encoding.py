"""Encoding cost per event and event-loop lag under large writes (issue 13).

``raw`` for the µs rows is ``json.dumps`` of the same payload in the same run; for the lag
rows it is the lag a thread running plain Python causes (the floor a thread hand-off can
reach on this machine: the GIL's switch interval plus the OS's scheduling under load). Lag
includes the garbage collector's full collections, which stop every thread; the CPU the
loop itself spends per step is what tests/test_loop_lag.py checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent_session_store import (
    Event,
    EventType,
    InMemorySessionStore,
    StoreError,
    open_session_store,
)
from agent_session_store.base import SessionStoreBase
from agent_session_store.codec import encode_event

from .common import PG_DSN, REDIS_URL, Row, drop_backend_data

_ALPHA = string.ascii_letters + string.digits + "     .,"


def _payload(rng: random.Random) -> dict[str, Any]:
    """~286 bytes of JSON, like the peer benchmark's events."""
    return {"role": "assistant", "content": "".join(rng.choice(_ALPHA) for _ in range(250))}


def _per_event_us(rounds: int, n: int) -> dict[str, float]:
    """Best per-event time of each step, the steps interleaved round by round."""
    rng = random.Random(1)
    payloads = [_payload(rng) for _ in range(n)]
    events = [Event(type=EventType.MESSAGE_RECEIVED, session_id="s", data=p) for p in payloads]
    store = InMemorySessionStore()
    steps: dict[str, Callable[[], Any]] = {
        "construct": lambda: [
            Event(type=EventType.MESSAGE_RECEIVED, session_id="s", data=p) for p in payloads
        ],
        "encode_event": lambda: [encode_event(e) for e in events],
        "store checks + encode": lambda: store._encode_batch(events),
        "json.dumps": lambda: [
            json.dumps(p, ensure_ascii=False, separators=(",", ":")) for p in payloads
        ],
    }
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            best[name] = min(best[name], (time.perf_counter() - start) / n * 1e6)
    return best


async def _max_lag_ms(work: Callable[[], Awaitable[Any]]) -> float:
    """The longest the event loop went without running a 1 ms ticker while ``work`` ran."""
    stop = False
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last - 0.001)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    await work()
    stop = True
    await task
    return worst * 1e3


def _python_work(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


async def _lags(store: SessionStoreBase, batch: int, big: int) -> dict[str, float]:
    """Max loop lag of each case: writing and reading back a batch, and one large event."""
    rng = random.Random(2)
    events = [
        Event(type=EventType.MESSAGE_RECEIVED, session_id="b", data=_payload(rng))
        for _ in range(batch)
    ]
    large = Event(type=EventType.MESSAGE_RECEIVED, session_id="l", data={"content": "x" * big})
    await store.append_event(Event(type=EventType.MESSAGE_RECEIVED, session_id="w"))  # warm
    lags = {"floor": await _max_lag_ms(lambda: asyncio.to_thread(_python_work, 0.3))}
    lags[f"append_events({batch:,})"] = await _max_lag_ms(lambda: store.append_events(events))
    lags[f"get_events, a {batch:,}-event page"] = await _max_lag_ms(lambda: store.get_events("b"))
    lags[f"append one {big // 1_000_000} MB event"] = await _max_lag_ms(
        lambda: store.append_event(large)
    )
    lags[f"get_events, one {big // 1_000_000} MB event"] = await _max_lag_ms(
        lambda: store.get_events("l")
    )
    return lags


def _stores(tmp: str) -> list[tuple[str, Callable[[], SessionStoreBase]]]:
    tag = f"bench_lag_{os.getpid()}"
    return [
        ("memory", lambda: InMemorySessionStore()),
        ("sqlite", lambda: open_session_store(f"sqlite:///{tmp}/lag.db?auto_migrate=true")),
        ("postgres", lambda: open_session_store(f"{PG_DSN}?schema={tag}&auto_migrate=true")),
        ("redis", lambda: open_session_store(f"{REDIS_URL}?prefix={tag}")),
    ]


async def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    us = _per_event_us(20 if quick else 100, 200)
    raw = us["json.dumps"]
    for name in ("construct", "encode_event", "store checks + encode"):
        rows.append(
            Row(
                "codec",
                f"{name}, 300-byte event",
                us[name],
                "µs/event",
                raw=raw,
                higher_is_better=False,
                bar="<= 5 µs" if name != "construct" else "",
                passed=us[name] <= 5 if name != "construct" else None,
            )
        )
    batch, big = (5_000, 3_000_000) if quick else (20_000, 12_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        for label, make in _stores(tmp):
            try:
                store = make()
                async with store:
                    lags = await _lags(store, batch, big)
            except (OSError, StoreError) as exc:  # a server that is not there: no rows
                print(f"(loop lag, {label}: skipped, {exc})", file=sys.stderr)
                continue
            finally:
                if label in ("postgres", "redis"):
                    await drop_backend_data(label, f"bench_lag_{os.getpid()}")
            floor = lags.pop("floor")
            for case, lag in lags.items():
                rows.append(
                    Row(
                        label,
                        f"max loop lag, {case}",
                        lag,
                        "ms",
                        raw=floor,
                        higher_is_better=False,
                        bar="<= 20 ms",
                        passed=lag <= 20,
                        extra={"load": os.getloadavg()[0]},
                    )
                )
    return rows
