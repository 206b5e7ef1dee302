"""Long-poll wake-ups: one subscriber connection per server for one store object.

The write script publishes on the session's channel (SPUBLISH, in the session's slot, in a
cluster). A subscription counts only once the server confirmed it, because the base class
queries right after ``_watch_start`` returns.

A channel whose last reader left stays subscribed for ``linger_s`` (at most ``linger_max``
channels, oldest dropped first): a follower long-polls the same session call after call,
and each call would otherwise cost a SUBSCRIBE round trip before its first query (and an
UNSUBSCRIBE after). Messages on a lingering channel wake nobody; a broken connection drops
every lingering channel (none is subscribed again on reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import Connection

from .. import wakes
from ..retry import Retry
from .limits import RECONNECT

if TYPE_CHECKING:
    from .store import RedisSessionStore

__all__ = ["Subscriber"]


class Subscriber:
    """One connection holding this store's subscriptions on one server.

    A subscription counts only once the server confirmed it, because the base class queries
    right after ``_watch_start`` returns. When the connection breaks, every reader is woken
    (to re-query, or to see the error), and again once every channel is confirmed anew.
    """

    linger_s = 30.0
    linger_max = 1024

    def __init__(self, store: RedisSessionStore, make: Any, sharded: bool, timeout: float):
        self._store = store
        self._make = make
        self._sub = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self._unsub = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        self._timeout = timeout
        self._conn: Connection | None = None
        self._channels: set[str] = set()
        self._pending: dict[str, list[asyncio.Future[None]]] = {}
        self._resync: set[str] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # channel -> when to unsubscribe, in that order; each is subscribed and confirmed on
        # the current connection
        self._linger: dict[str, float] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def _connect(self) -> Connection:
        """Connect and re-subscribe what is wanted; call with the lock held, under a
        timeout: the subscriber connection has no socket timeout, and a hung server (one
        paused, or a dead host) accepts the TCP connection but never answers the handshake."""
        conn: Connection = self._make()
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            if self._channels:
                self._resync = set(self._channels)
                await conn.send_command(self._sub, *self._channels)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        self._conn = conn
        return conn

    async def subscribe(self, channel: str) -> None:
        """Subscribe and wait for the server's confirmation, all within the timeout."""
        if self._linger.pop(channel, None) is not None and self._conn is not None:
            return  # still subscribed since its last reader left: no round trip
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._lock:
                    conn = self._conn
                    if conn is None:
                        conn = await self._connect()
                    if self._task is None or self._task.done():
                        self._task = asyncio.create_task(self._run())
                    self._channels.add(channel)
                    self._pending.setdefault(channel, []).append(fut)
                    await conn.send_command(self._sub, channel)
                await fut
        except BaseException:
            self._drop(channel, fut)
            raise

    def _drop(self, channel: str, fut: asyncio.Future[None]) -> None:
        waiting = self._pending.get(channel)
        if waiting and fut in waiting:
            waiting.remove(fut)
        self._channels.discard(channel)
        if not fut.done():
            fut.cancel()

    async def unsubscribe(self, channel: str) -> None:
        """The channel's last reader left: keep it subscribed a while (see the module doc)."""
        if (
            self._conn is None
            or self._closed
            or channel not in self._channels
            or self._pending.get(channel)
        ):
            await self._unsubscribe([channel])
            return
        loop = asyncio.get_running_loop()
        first = next(iter(self._linger.values()), None)
        self._linger.pop(channel, None)
        self._linger[channel] = loop.time() + self.linger_s
        if (
            self._sweeper is None
            or self._sweeper.done()
            or first != next(iter(self._linger.values()))
        ):
            if self._sweeper is not None:
                self._sweeper.cancel()  # it sleeps until a deadline that is no longer first
            self._sweeper = asyncio.create_task(self._sweep())
        if len(self._linger) > self.linger_max:
            await self._expire(loop.time())

    async def _unsubscribe(self, channels: list[str]) -> None:
        for channel in channels:
            self._channels.discard(channel)
        conn = self._conn
        if conn is not None and channels:
            # a failure here means a broken connection, which the reader task recovers from
            with contextlib.suppress(Exception):
                await conn.send_command(self._unsub, *channels)

    async def _expire(self, now: float) -> None:
        """Unsubscribe the lingering channels that are due, and the oldest beyond the cap."""
        due: list[str] = []
        for channel, until in self._linger.items():
            if until > now and len(self._linger) - len(due) <= self.linger_max:
                break
            due.append(channel)
        for channel in due:
            del self._linger[channel]
        await self._unsubscribe(due)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self._linger and not self._closed:
            await asyncio.sleep(max(0.0, next(iter(self._linger.values())) - loop.time()))
            await self._expire(loop.time())

    async def _run(self) -> None:
        retry = Retry(RECONNECT)
        while not self._closed:
            conn = self._conn
            if conn is None:
                if not self._channels:
                    return  # idle: the next subscribe connects again
                try:
                    async with asyncio.timeout(self._timeout), self._lock:
                        conn = self._conn or await self._connect()
                    retry.reset()
                except Exception:
                    await retry.pause()  # RECONNECT has no bound: this loop ends when idle
                    continue
            try:
                while True:
                    msg = await conn.read_response(push_request=True)
                    self._dispatch(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                if self._conn is conn:
                    self._conn = None
                for channel in self._linger:
                    self._channels.discard(channel)  # nobody waits on these: not again
                self._linger.clear()
                for waiting in self._pending.values():
                    for fut in waiting:
                        if not fut.done():
                            fut.set_exception(exc)
                self._pending.clear()
                with contextlib.suppress(Exception):
                    await conn.disconnect()
                self._store._waiters.notify_all()

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, list) or len(msg) < 2:
            return
        kind = msg[0]
        channel = msg[1]
        if kind in ("message", "smessage"):
            sid = self._store._channel_sessions.get(channel)
            if sid is not None:
                # the message says what the session got (``None``, wake all: unreadable)
                self._store._notify((sid,), {sid: wakes.loads(msg[-1])})
        elif kind in ("subscribe", "ssubscribe"):
            waiting = self._pending.get(channel)
            if waiting:
                fut = waiting.pop(0)
                if not fut.done():
                    fut.set_result(None)
            if channel in self._resync:
                self._resync.discard(channel)
                if not self._resync:
                    self._store._waiters.notify_all()
        elif kind == "sunsubscribe" and channel in self._channels:
            # not asked for: the server gave the channel's slot to another master
            self._channels.discard(channel)
            self._linger.pop(channel, None)
            self._store._follow_moved_channel(channel)

    async def close(self) -> None:
        self._closed = True
        self._linger.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(BaseException):
                await self._sweeper
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None
