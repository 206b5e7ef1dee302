"""Server-Sent Events over ``stream_events``: one reader per stream, fanned out.

Each distinct stream (session and filters) has one producer task iterating
``store.stream_events``; every event is encoded once and offered to each subscriber's
bounded buffer. A subscriber whose buffer is full (a client that does not read fast enough)
is cut off, so it can never slow the producer or the other subscribers; its browser
reconnects with ``Last-Event-ID`` and resumes where it stopped. A new subscriber first reads
what it missed with ``get_events`` (up to the producer's position at the moment it joined),
then the live buffer; sequence numbers make the hand-over exact (each id once, in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.types import Receive, Scope, Send

from ..errors import StoreError
from ..models import Event
from ..ports import SessionStore
from ..retry import Retry, RetryPolicy, gave_up

__all__ = ["StreamHub", "StreamLimits", "encode_frame"]

_CATCH_UP_PAGE = 500
# A stream joins again when the channel it found ended while starting; a channel that keeps
# ending (a store failing each start) is reported instead of being restarted for ever.
_JOIN_RETRY = RetryPolicy(attempts=50, timeout=10.0, first_delay=0.001, max_delay=0.1)


def encode_frame(event: Event) -> bytes:
    """One SSE message: ``id`` is the sequence number, ``data`` the event as JSON (one line)."""
    body = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.sequence_number}\ndata: {body}\n\n".encode()


def error_frame(err: StoreError) -> bytes:
    body = json.dumps({"code": err.code, "message": err.message}, ensure_ascii=False)
    return f"event: error\ndata: {body}\n\n".encode()


@dataclass(frozen=True, slots=True)
class StreamLimits:
    #: A subscriber more than this many events or bytes behind is disconnected.
    max_buffered_events: int = 1000
    max_buffered_bytes: int = 4 << 20
    #: A comment line is sent after this long without data, so proxies keep the stream open.
    heartbeat_s: float = 15.0
    #: How long a cut-off client waits before reconnecting (the SSE ``retry:`` field).
    retry_ms: int = 1000
    #: Writes to one client are at least this far apart; events arriving meanwhile go out
    #: together. Bounds the per-client write rate (50/s) whatever the append rate, for at
    #: most this much added latency.
    coalesce_ms: float = 20.0


class _Subscriber:
    __slots__ = (
        "buffered",
        "coalescing",
        "cut",
        "ended",
        "error",
        "last_write",
        "limits",
        "ping_due",
        "queue",
        "wake",
    )

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self.queue: deque[tuple[int, bytes]] = deque()
        self.buffered = 0
        self.wake = asyncio.Event()
        self.cut = asyncio.Event()  # set when the buffer overflowed or the stream must end
        self.ended = False
        self.error: StoreError | None = None
        self.last_write = asyncio.get_running_loop().time()
        self.ping_due = False
        self.coalescing = False

    def offer(self, seq: int, frame: bytes) -> None:
        if self.cut.is_set():
            return
        limits = self.limits
        if (
            len(self.queue) >= limits.max_buffered_events
            or self.buffered + len(frame) > limits.max_buffered_bytes
        ):
            self.queue.clear()
            self.buffered = 0
            self.cut.set()
            self.wake.set()
            return
        self.queue.append((seq, frame))
        self.buffered += len(frame)
        if not self.coalescing or self.filling():
            self.wake.set()

    def filling(self) -> bool:
        """Over a quarter of either limit: write now rather than wait to coalesce."""
        limits = self.limits
        return (
            len(self.queue) * 4 >= limits.max_buffered_events
            or self.buffered * 4 >= limits.max_buffered_bytes
        )

    def end(self, error: StoreError | None = None) -> None:
        self.ended = True
        self.error = error
        self.wake.set()


FilterKey = tuple[str, str | None, str | None, datetime | None]


class _Channel:
    """One ``stream_events`` reader shared by every subscriber of the same stream."""

    def __init__(self, hub: StreamHub, key: FilterKey) -> None:
        self.hub = hub
        self.key = key
        self.subscribers: set[_Subscriber] = set()
        self.position = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run(), name=f"sse:{key[0]}")

    def filters(self) -> dict[str, Any]:
        _, run_id, type_, since = self.key
        found: dict[str, Any] = {}
        if run_id is not None:
            found["run_id"] = run_id
        if type_ is not None:
            found["type"] = type_
        if since is not None:
            found["since"] = since
        return found

    async def _run(self) -> None:
        store, session_id = self.hub.store, self.key[0]
        error: StoreError | None = None
        try:
            self.position = await store.get_latest_sequence(session_id)
            self.ready.set_result(None)
            async for event in store.stream_events(
                session_id, after=self.position, **self.filters()
            ):
                seq = event.sequence_number or 0
                frame = encode_frame(event)
                self.position = seq
                for sub in self.subscribers:
                    sub.offer(seq, frame)
        except StoreError as err:
            error = err
            if not self.ready.done():
                self.ready.set_exception(err)
        finally:
            if not self.ready.done():
                self.ready.cancel()
            self.hub._forget(self)
            for sub in self.subscribers:
                sub.end(error)


class StreamHub:
    """Every live stream of one app; ``close()`` ends them all (server shutdown)."""

    def __init__(self, store: SessionStore, limits: StreamLimits | None = None) -> None:
        self.store = store
        self.limits = limits or StreamLimits()
        self._channels: dict[FilterKey, _Channel] = {}
        self._subscribers: set[_Subscriber] = set()
        self.closed = False
        #: Subscribers cut off for falling behind, since start (reported by the bench).
        self.disconnected_slow = 0
        self._beat: asyncio.Task[None] | None = None

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    def _forget(self, channel: _Channel) -> None:
        if self._channels.get(channel.key) is channel:
            del self._channels[channel.key]

    async def _heartbeats(self) -> None:
        """One timer for every subscriber (not one per wait): marks the idle ones for a ping."""
        loop = asyncio.get_running_loop()
        every = self.limits.heartbeat_s
        try:
            while self._subscribers and not self.closed:
                await asyncio.sleep(max(0.05, every / 4))
                now = loop.time()
                for sub in self._subscribers:
                    if now - sub.last_write >= every:
                        sub.ping_due = True
                        sub.wake.set()
        finally:
            self._beat = None

    async def close(self) -> None:
        self.closed = True
        if self._beat is not None:
            self._beat.cancel()
        channels = list(self._channels.values())
        self._channels.clear()
        for sub in list(self._subscribers):
            sub.end()
            sub.cut.set()
        for channel in channels:
            channel.task.cancel()
        for channel in channels:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await channel.task

    async def _join(self, key: FilterKey) -> tuple[_Channel, _Subscriber, int]:
        retry = Retry(_JOIN_RETRY)
        while True:
            channel = self._channels.get(key)
            if channel is None:
                channel = self._channels[key] = _Channel(self, key)
            try:
                await asyncio.shield(channel.ready)
            except asyncio.CancelledError:
                if not channel.task.done() or self.closed:
                    raise
            if channel.task.done():  # it ended while starting; start another
                if not await retry.pause():
                    raise gave_up("server", "stream", retry, "its channel kept ending at start")
                continue
            sub = _Subscriber(self.limits)
            # No await between reading the position and joining: every event after
            # `position` reaches this subscriber's buffer.
            channel.subscribers.add(sub)
            self._subscribers.add(sub)
            if self._beat is None:
                self._beat = asyncio.create_task(self._heartbeats(), name="sse-heartbeats")
            return channel, sub, channel.position

    def _leave(self, channel: _Channel, sub: _Subscriber) -> None:
        channel.subscribers.discard(sub)
        self._subscribers.discard(sub)
        if not channel.subscribers and not channel.task.done():
            self._forget(channel)
            channel.task.cancel()

    def response(
        self,
        session_id: str,
        *,
        after: int,
        run_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
    ) -> SSEResponse:
        return SSEResponse(self, (session_id, run_id, type, since), after)


class SSEResponse:
    """An ASGI response that streams one subscription until the client, the hub or the
    buffer limit ends it. It is a plain ASGI callable rather than a ``StreamingResponse``
    so a cut-off can interrupt a write that blocks on a client which stopped reading."""

    media_type = "text/event-stream"

    def __init__(self, hub: StreamHub, key: FilterKey, after: int) -> None:
        self.hub = hub
        self.key = key
        self.after = after
        self.headers: list[tuple[bytes, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        channel, sub, position = await hub._join(self.key)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache, no-store"),
                        (b"x-accel-buffering", b"no"),
                        *self.headers,
                    ],
                }
            )
            writer = asyncio.ensure_future(self._write(send, channel, sub, position))
            listener = asyncio.ensure_future(_until_disconnect(receive))
            cut = asyncio.ensure_future(sub.cut.wait())
            done, pending = await asyncio.wait(
                {writer, listener, cut}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if writer in done and writer.exception() is not None:
                exc = writer.exception()
                assert exc is not None
                raise exc
            if cut in done and not sub.ended:
                hub.disconnected_slow += 1
            if listener not in done:
                # End the response cleanly, unless the client is too stuck even for that.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        send({"type": "http.response.body", "body": b"", "more_body": False}), 1.0
                    )
        finally:
            hub._leave(channel, sub)

    async def _write(self, send: Send, channel: _Channel, sub: _Subscriber, position: int) -> None:
        hub, limits = self.hub, self.hub.limits
        session_id = self.key[0]

        async def body(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        await body(f"retry: {limits.retry_ms}\n\n".encode())
        last = self.after
        # What the client missed, up to where the shared reader was when it joined.
        while last < position:
            try:
                page = await hub.store.get_events(
                    session_id,
                    after=last,
                    before=position + 1,
                    limit=_CATCH_UP_PAGE,
                    **channel.filters(),
                )
            except StoreError as err:
                await body(error_frame(err))
                return
            if not page:
                break
            await body(b"".join(encode_frame(e) for e in page))
            last = page[-1].sequence_number or last
            if len(page) < _CATCH_UP_PAGE:
                break
        last = max(last, position)
        loop = asyncio.get_running_loop()
        gap = limits.coalesce_ms / 1000
        while True:
            if sub.queue:
                wait = sub.last_write + gap - loop.time()
                if wait > 0 and not sub.filling():
                    # Woken by the timer, or by offer() once the buffer is filling up.
                    sub.coalescing = True
                    sub.wake.clear()
                    timer = loop.call_later(wait, sub.wake.set)
                    try:
                        await sub.wake.wait()
                    finally:
                        sub.coalescing = False
                        timer.cancel()
                frames = []
                while sub.queue:
                    seq, frame = sub.queue.popleft()
                    sub.buffered -= len(frame)
                    if seq > last:
                        frames.append(frame)
                        last = seq
                if frames:
                    await body(b"".join(frames))
                    sub.last_write = loop.time()
                continue
            if sub.ended:
                if sub.error is not None:
                    await body(error_frame(sub.error))
                return
            if hub.closed:
                return
            if sub.ping_due:
                sub.ping_due = False
                await body(b": ping\n\n")
                sub.last_write = loop.time()
                continue
            sub.wake.clear()
            await sub.wake.wait()


async def _until_disconnect(receive: Callable[[], Awaitable[Any]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
