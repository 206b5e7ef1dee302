"""SSE against a real uvicorn server: order, resume, filters, heartbeats, slow clients cut
off without slowing others, and streams released on disconnect and on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_session_store import Event, EventType, Session, open_session_store
from agent_session_store.ports import SessionStore
from agent_session_store.server import StreamLimits

from .conftest import LiveServer

SID = "ses_live"


async def _writer(db: Path) -> SessionStore:
    store: SessionStore = await open_session_store(f"sqlite:///{db}").__aenter__()
    await store.save_session(Session(id=SID, agent_id="a"))
    return store


def _ev(i: int, kind: EventType = EventType.MESSAGE_SENT, **data: Any) -> Event:
    return Event(type=kind, session_id=SID, data={"i": i, **data})


async def _frames(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """SSE messages as dicts of their fields; comments come as {"comment": ...}."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if fields:
                yield fields
            fields = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


async def _take(response: httpx.Response, n: int, within: float = 10) -> list[dict[str, str]]:
    got: list[dict[str, str]] = []

    async def run() -> None:
        async for frame in _frames(response):
            if "id" in frame:
                got.append(frame)
                if len(got) == n:
                    return

    await asyncio.wait_for(run(), within)
    return got


async def _until(check: Callable[[], bool], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _url(server: LiveServer, **params: Any) -> str:
    q = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{server.base}/api/sessions/{SID}/events/stream" + (f"?{q}" if q else "")


async def test_order_resume_and_header_wins(live_sqlite: LiveServer) -> None:
    writer = await _writer(live_sqlite.db)  # type: ignore[attr-defined]
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            async with client.stream("GET", _url(live_sqlite)) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                for i in range(5):
                    await writer.append_event(_ev(i))
                got = await _take(r, 5)
            assert [f["id"] for f in got] == ["1", "2", "3", "4", "5"]
            assert [json.loads(f["data"])["data"]["i"] for f in got] == [0, 1, 2, 3, 4]
            assert all(json.loads(f["data"])["sequence_number"] == int(f["id"]) for f in got)
            for i in range(5, 8):
                await writer.append_event(_ev(i))
            # A reconnecting browser sends Last-Event-ID; it wins over the URL's after=.
            headers = {"last-event-id": "5"}
            async with client.stream("GET", _url(live_sqlite, after=0), headers=headers) as r:
                got = await _take(r, 3)
            assert [f["id"] for f in got] == ["6", "7", "8"]
            async with client.stream("GET", _url(live_sqlite, after=7)) as r:
                await writer.append_event(_ev(8))
                got = await _take(r, 1)
            assert [f["id"] for f in got] == ["8"]
            await _until(
                lambda: live_sqlite.hub is not None and live_sqlite.hub.subscriber_count == 0
            )
            await _until(lambda: live_sqlite.hub is not None and live_sqlite.hub.channel_count == 0)
    finally:
        await writer.close()


async def test_filters_apply(live_sqlite: LiveServer) -> None:
    writer = await _writer(live_sqlite.db)  # type: ignore[attr-defined]
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            url = _url(live_sqlite, type="tool_call_started")
            async with client.stream("GET", url) as r:
                for i in range(6):
                    kind = EventType.TOOL_CALL_STARTED if i % 2 else EventType.MESSAGE_SENT
                    await writer.append_event(_ev(i, kind))
                got = await _take(r, 3)
            assert [f["id"] for f in got] == ["2", "4", "6"]
            r2 = await client.get(_url(live_sqlite, type="bogus"))
            assert r2.status_code == 400 and r2.json()["code"] == "invalid_event_type"
            r3 = await client.get(_url(live_sqlite), headers={"last-event-id": "x"})
            assert r3.status_code == 400 and r3.json()["code"] == "validation_error"
    finally:
        await writer.close()


@pytest.fixture(params=["httptools", "h11"])
def live_tight(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """Tight bounds; served by uvicorn's httptools (subscribers write straight to their
    socket) and by h11 (the plain ASGI ``send`` path)."""
    db = tmp_path / "store.db"
    limits = StreamLimits(max_buffered_events=100, max_buffered_bytes=512 << 10, heartbeat_s=0.2)
    server = LiveServer(
        f"sqlite:///{db}?auto_migrate=true", http=request.param, stream_limits=limits
    ).start()
    server.db = db  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


async def test_heartbeat(live_tight: LiveServer) -> None:
    writer = await _writer(live_tight.db)  # type: ignore[attr-defined]
    try:
        async with (
            httpx.AsyncClient(timeout=10) as client,
            client.stream("GET", _url(live_tight)) as r,
        ):

            async def ping() -> None:
                async for frame in _frames(r):
                    if frame.get("comment") == "ping":
                        return

            await asyncio.wait_for(ping(), 5)
    finally:
        await writer.close()


async def test_slow_client_is_cut_and_others_get_everything(live_tight: LiveServer) -> None:
    writer = await _writer(live_tight.db)  # type: ignore[attr-defined]
    hub = live_tight.hub
    assert hub is not None
    # A client that connects and then never reads, with a tiny receive window.
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", live_tight.port))
    slow.sendall(f"GET /api/sessions/{SID}/events/stream HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        await _until(lambda: hub.subscriber_count == 1)
        # Enough bytes to fill the kernel's socket buffers and uvicorn's, then ours.
        n = 600
        async with (
            httpx.AsyncClient(timeout=20) as client,
            client.stream("GET", _url(live_tight)) as r,
        ):
            await _until(lambda: hub.subscriber_count == 2)
            reading = asyncio.create_task(_take(r, n, within=30))
            blob = "x" * 12_000
            for start in range(0, n, 10):
                await writer.append_events([_ev(i, blob=blob) for i in range(start, start + 10)])
            got = await reading
        assert [int(f["id"]) for f in got] == list(range(1, n + 1))
        await _until(lambda: hub.disconnected_slow >= 1)
        await _until(lambda: hub.subscriber_count == 0)
    finally:
        slow.close()
        await writer.close()


async def test_shutdown_releases_streams(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    server = LiveServer(f"sqlite:///{db}?auto_migrate=true").start()
    writer = await _writer(db)
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def follow() -> int:
                count = 0
                async with client.stream("GET", _url(server)) as r:
                    async for frame in _frames(r):
                        count += "id" in frame
                return count

            tasks = [asyncio.create_task(follow()) for _ in range(3)]
            assert server.hub is not None
            await _until(lambda: server.hub is not None and server.hub.subscriber_count == 3)
            await writer.append_event(_ev(1))
            started = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, server.stop)
            assert time.monotonic() - started < 5
            counts = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
            assert server.hub.subscriber_count == 0
            assert server.hub.channel_count == 0
            assert all(c in (0, 1) or isinstance(c, Exception) for c in counts)
    finally:
        await writer.close()


async def test_live_subscribers_write_straight_to_the_socket_on_httptools(
    live_tight: LiveServer,
) -> None:
    """On uvicorn's httptools every caught-up subscriber gets its batches written by the
    shared reader itself (no task wake-up, no ASGI layers); on h11 they go through
    ``send``. Both deliver every event in order."""
    writer = await _writer(live_tight.db)  # type: ignore[attr-defined]
    hub = live_tight.hub
    assert hub is not None
    try:
        async with (
            httpx.AsyncClient(timeout=10) as client,
            client.stream("GET", _url(live_tight)) as r1,
            client.stream("GET", _url(live_tight)) as r2,
        ):
            await _until(lambda: hub.subscriber_count == 2)
            for i in range(5):
                await writer.append_event(_ev(i))
            for r in (r1, r2):
                got = await _take(r, 5)
                assert [f["id"] for f in got] == ["1", "2", "3", "4", "5"]
        assert hub.direct_writers == (2 if live_tight.http == "httptools" else 0)
    finally:
        await writer.close()


@pytest.fixture
def live_budget(tmp_path: Path) -> Any:
    db = tmp_path / "store.db"
    # 4 subscribers within 40 writes a second: batches at least 0.1 s apart.
    limits = StreamLimits(coalesce_ms=1, max_writes_per_s=40)
    server = LiveServer(f"sqlite:///{db}?auto_migrate=true", stream_limits=limits).start()
    server.db = db  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


async def test_batches_of_a_wide_stream_are_spaced_by_the_write_budget(
    live_budget: LiveServer,
) -> None:
    """Many subscribers on one stream: the batch rate, so the CPU of the fan-out, is bounded
    by ``max_writes_per_s`` whatever the append rate; every event still arrives, in order."""
    writer = await _writer(live_budget.db)  # type: ignore[attr-defined]
    hub = live_budget.hub
    assert hub is not None
    n = 20
    try:
        async with httpx.AsyncClient(timeout=10) as client, contextlib.AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(client.stream("GET", _url(live_budget)))
                for _ in range(4)
            ]
            await _until(lambda: hub.subscriber_count == 4)
            before = hub.batches
            started = time.monotonic()
            for i in range(n):
                await writer.append_event(_ev(i))
                await asyncio.sleep(0.005)  # appends spread out: each could be its own batch
            for r in streams:
                got = await _take(r, n)
                assert [int(f["id"]) for f in got] == list(range(1, n + 1))
            elapsed = time.monotonic() - started
            batches = hub.batches - before
        assert batches <= elapsed / 0.1 + 2, (batches, elapsed)
    finally:
        await writer.close()
