"""Server-Sent Events over ``stream_events``: one reader per stream, fanned out in batches.

Each distinct stream (session and filters) has one producer task iterating
``store.stream_events``. Events are encoded once, gathered for at most ``coalesce_ms`` and
handed as one shared, pre-encoded batch to every subscriber's bounded queue: per subscriber a
batch costs a queue append, one wake-up and one socket write, whatever the number of events in
it, and the batch rate (so the CPU of a fan-out) is bounded by the window, not by the append
rate. A subscriber whose queue is over its bound (a client that does not read fast enough) is
cut off, so it can never slow the producer or the other subscribers; its browser reconnects
with ``Last-Event-ID`` and resumes where it stopped. A new subscriber first reads what it
missed with ``get_events`` (up to the last batch handed out when it joined), then its queue;
sequence numbers make the hand-over exact (each id once, in order).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from starlette.types import Receive, Scope, Send

from ..errors import StoreError
from ..models import Event
from ..ports import SessionStore
from ..retry import Retry, RetryPolicy, gave_up
from .jsonenc import dumps, dumps_event

__all__ = ["RAW_SEND", "StreamHub", "StreamLimits", "encode_frame"]

_CATCH_UP_PAGE = 500
# A stream joins again when the channel it found ended while starting; a channel that keeps
# ending (a store failing each start) is reported instead of being restarted for ever.
_JOIN_RETRY = RetryPolicy(attempts=50, timeout=10.0, first_delay=0.001, max_delay=0.1)

#: Where ``create_app``'s outermost layer keeps the server's own ``send`` in the scope.
RAW_SEND = "agent_session_store.raw_send"


class _Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_PING_CHUNK = _http_chunk(b": ping\n\n")


def _direct_transport(send: Any) -> _Transport | None:
    """The socket of a uvicorn (httptools) response already started with chunked encoding,
    or None. Writing each batch straight to it, from the producer, makes a subscriber cost
    one ``write`` per batch instead of a task wake-up and a trip through every ASGI layer;
    any other server (or an app mounted inside another) keeps the plain ``send`` path."""
    cycle = getattr(send, "__self__", None)
    if cycle is None or type(cycle).__module__ != "uvicorn.protocols.http.httptools_impl":
        return None
    transport = getattr(cycle, "transport", None)
    if getattr(cycle, "chunked_encoding", None) is not True or not all(
        callable(getattr(transport, name, None))
        for name in ("write", "is_closing", "get_write_buffer_size")
    ):
        return None
    found: _Transport = transport  # type: ignore[assignment]
    return found


def encode_frame(event: Event) -> bytes:
    """One SSE message: ``id`` is the sequence number, ``data`` the event as JSON (one line)."""
    return b"id: %d\ndata: %s\n\n" % (event.sequence_number or 0, dumps_event(event))


def error_frame(err: StoreError) -> bytes:
    return b"event: error\ndata: %s\n\n" % dumps({"code": err.code, "message": err.message})


@dataclass(frozen=True, slots=True)
class StreamLimits:
    #: A subscriber more than this many events or bytes behind is disconnected.
    max_buffered_events: int = 1000
    max_buffered_bytes: int = 4 << 20
    #: A comment line is sent after this long without data, so proxies keep the stream open.
    heartbeat_s: float = 15.0
    #: How long a cut-off client waits before reconnecting (the SSE ``retry:`` field).
    retry_ms: int = 1000
    #: Batches of one stream are at least this far apart; events arriving meanwhile go out
    #: together. Bounds every subscriber's write rate (50/s) whatever the append rate, for at
    #: most this much added latency; an event after a quiet spell goes out at once.
    coalesce_ms: float = 20.0
    #: Socket writes a second one stream may cost (subscribers x batches a second): a
    #: stream with many subscribers spaces its batches further apart than ``coalesce_ms``
    #: (1,000 subscribers: 40 ms) so a fan-out's CPU stays bounded. A write costs about
    #: 5 us (bench/server.py), so the default is an eighth of a core.
    max_writes_per_s: float = 25_000.0


class _Batch:
    """Consecutive events of one stream, encoded once and shared by every subscriber."""

    __slots__ = ("_chunk", "count", "data", "first", "frames", "last", "seqs")

    def __init__(self, seqs: list[int], frames: list[bytes]) -> None:
        self.seqs = seqs
        self.frames = frames
        self.first = seqs[0]
        self.last = seqs[-1]
        self.count = len(seqs)
        self.data = frames[0] if len(frames) == 1 else b"".join(frames)
        self._chunk: bytes | None = None

    def chunk(self) -> bytes:
        """``data`` framed as one HTTP/1.1 chunk, built once for every direct writer."""
        if self._chunk is None:
            self._chunk = _http_chunk(self.data)
        return self._chunk

    def after(self, seq: int) -> bytes:
        """The frames of the events past ``seq`` (a subscriber that read some already)."""
        return b"".join(f for s, f in zip(self.seqs, self.frames, strict=True) if s > seq)


class _Subscriber:
    __slots__ = (
        "buffered",
        "cut",
        "direct",
        "ended",
        "error",
        "events",
        "last_write",
        "limits",
        "live",
        "ping_due",
        "queue",
        "waiter",
    )

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self.queue: deque[_Batch] = deque()
        self.events = 0
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.cut = asyncio.Event()  # set when the queue overflowed or the stream must end
        self.ended = False
        self.error: StoreError | None = None
        self.last_write = asyncio.get_running_loop().time()
        self.ping_due = False
        #: The connection's transport when the server lets us write to it directly.
        self.direct: _Transport | None = None
        #: Caught up and nothing queued: batches are written as they come, by the producer.
        self.live = False

    def push(self, batch: _Batch, now: float) -> None:
        if self.cut.is_set():
            return
        limits = self.limits
        if self.live:
            self.write_now(batch.chunk(), now)
            return
        if (
            self.events + batch.count > limits.max_buffered_events
            or self.buffered + len(batch.data) > limits.max_buffered_bytes
        ):
            self.cut_off()
        else:
            self.queue.append(batch)
            self.events += batch.count
            self.buffered += len(batch.data)
        self.wake()

    def write_now(self, chunk: bytes, now: float) -> None:
        """Write to the socket at once; what the kernel does not take waits in the
        transport's buffer, and a subscriber whose buffer passes the bound is cut off."""
        transport = self.direct
        assert transport is not None
        if transport.is_closing():
            return  # the client left; its request's listener ends the stream
        transport.write(chunk)
        self.last_write = now
        if transport.get_write_buffer_size() > self.limits.max_buffered_bytes:
            self.cut_off()

    def cut_off(self) -> None:
        self.queue.clear()
        self.events = self.buffered = 0
        self.live = False
        self.cut.set()
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter

    def end(self, error: StoreError | None = None) -> None:
        self.ended = True
        self.error = error
        self.wake()


FilterKey = tuple[str, str | None, str | None, datetime | None]


class _Channel:
    """One ``stream_events`` reader shared by every subscriber of the same stream."""

    def __init__(self, hub: StreamHub, key: FilterKey) -> None:
        self.hub = hub
        self.key = key
        self.subscribers: set[_Subscriber] = set()
        #: The last event handed to the subscribers: a subscriber joining now gets every
        #: later one through its queue.
        self.position = 0
        self._loop = asyncio.get_running_loop()
        self._gap = hub.limits.coalesce_ms / 1000
        self._max_writes = max(1.0, hub.limits.max_writes_per_s)
        self._seqs: list[int] = []
        self._frames: list[bytes] = []
        self._pending_bytes = 0
        limits = hub.limits
        self._max_batch_events = max(1, limits.max_buffered_events // 4)
        self._max_batch_bytes = max(1, limits.max_buffered_bytes // 4)
        self._flush_at: asyncio.Handle | None = None
        self._last_flush = -1e9
        self.ready: asyncio.Future[None] = self._loop.create_future()
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

    def _received(self, event: Event) -> bool:
        """Add ``event`` to the pending batch; True when the batch was full and went out."""
        frame = encode_frame(event)
        self._seqs.append(event.sequence_number or 0)
        self._frames.append(frame)
        self._pending_bytes += len(frame)
        if (
            len(self._seqs) >= self._max_batch_events
            or self._pending_bytes >= self._max_batch_bytes
        ):
            # A batch never holds more than a quarter of a subscriber's bound, so one that
            # keeps up is never cut because many events came at once.
            if self._flush_at is not None:
                self._flush_at.cancel()
            self._flush()
            return True
        if self._flush_at is None:
            gap = max(self._gap, len(self.subscribers) / self._max_writes)
            wait = self._last_flush + gap - self._loop.time()
            # call_soon even when due: the rest of a page the store read comes meanwhile.
            self._flush_at = (
                self._loop.call_later(wait, self._flush)
                if wait > 0
                else self._loop.call_soon(self._flush)
            )
        return False

    def _flush(self) -> None:
        self._flush_at = None
        if not self._seqs:
            return
        batch = _Batch(self._seqs, self._frames)
        self._seqs, self._frames = [], []
        self._pending_bytes = 0
        self._last_flush = self._loop.time()
        self.position = batch.last
        now = self._last_flush
        self.hub.batches += 1
        for sub in self.subscribers:
            sub.push(batch, now)

    async def _run(self) -> None:
        store, session_id = self.hub.store, self.key[0]
        error: StoreError | None = None
        try:
            self.position = await store.get_latest_sequence(session_id)
            self.ready.set_result(None)
            received = self._received
            async for event in store.stream_events(
                session_id, after=self.position, **self.filters()
            ):
                if received(event):
                    await asyncio.sleep(0)  # let the subscribers write it before the next
        except StoreError as err:
            error = err
            if not self.ready.done():
                self.ready.set_exception(err)
        finally:
            if self._flush_at is not None:
                self._flush_at.cancel()
            self._flush()  # what was read still goes out
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
        #: Subscribers that went live writing straight to their socket, since start.
        self.direct_writers = 0
        #: Batches handed out, since start (one per stream per coalescing window at most).
        self.batches = 0
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
                for sub in list(self._subscribers):
                    if now - sub.last_write >= every:
                        if sub.live:
                            sub.write_now(_PING_CHUNK, now)
                        else:
                            sub.ping_due = True
                            sub.wake()
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
            sub.direct = _direct_transport(scope.get(RAW_SEND))
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
        queue = sub.queue
        while True:
            if queue:
                chunks = []
                while queue:
                    batch = queue.popleft()
                    if batch.first > last:
                        chunks.append(batch.data)
                    elif batch.last > last:
                        chunks.append(batch.after(last))
                    else:
                        continue
                    last = batch.last
                sub.events = sub.buffered = 0
                if chunks:
                    await body(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                    sub.last_write = loop.time()
                continue
            if sub.direct is not None and not sub.cut.is_set():
                # Caught up with nothing queued, and no await since the check: from here the
                # producer writes each batch itself, in order.
                sub.live = True
                hub.direct_writers += 1
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
            await sub.wait()


async def _until_disconnect(receive: Callable[[], Awaitable[Any]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
