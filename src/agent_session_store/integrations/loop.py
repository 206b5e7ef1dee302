"""StoreLoop: one store shared by the loops and threads a framework calls it from.

Adapters program against the public ports only, so every backend of ours serves every
framework. ``StoreLoop`` is what they share: frameworks call their storage from loops they
create themselves (``Runner.run_sync``, a sync ``graph.invoke``), while a store's connections
belong to the loop that opened them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..errors import StoreError, ValidationError
from ..ports import SessionStore
from ..urls import open_session_store

__all__ = ["StoreLoop"]

T = TypeVar("T")


class StoreLoop:
    """A session store and the event loop it lives on, callable from any loop or thread.

    ``StoreLoop(store)`` runs every call in the caller's own loop (the fast path: one loop,
    no hop). ``StoreLoop.in_thread(url)`` opens the store on a private loop in a daemon thread,
    so code running in other loops, or in no loop at all, can share one store.
    """

    def __init__(self, store: SessionStore, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.store = store
        self._loop = loop
        self._thread: threading.Thread | None = None
        self._owns_store = False

    @classmethod
    def in_thread(cls, store_or_url: SessionStore | str, **options: Any) -> StoreLoop:
        """Open the store (a URL, or a store not yet opened) on a private loop thread."""
        store: SessionStore = (
            open_session_store(store_or_url, **options)
            if isinstance(store_or_url, str)
            else store_or_url
        )
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="store-loop", daemon=True)
        thread.start()
        runner = cls(store, loop)
        runner._thread = thread
        runner._owns_store = True
        try:
            runner.run_sync(lambda: store.__aenter__())
        except BaseException:
            runner._stop()
            raise
        return runner

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    async def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Await ``make()`` on the store's loop, from whatever loop the caller is in."""
        loop = self._loop
        if loop is None or loop is asyncio.get_running_loop():
            return await make()
        return await asyncio.wrap_future(self._submit(loop, make))

    def run_sync(self, make: Callable[[], Awaitable[T]]) -> T:
        """Block until ``make()`` has run on the store's loop (never from that loop itself)."""
        loop = self._loop
        if loop is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(_call(make))
            raise ValidationError(
                "a synchronous call on a store bound to the running loop would block that "
                "loop: use the async method, or StoreLoop.in_thread(...)"
            )
        if _running_in(loop):
            raise ValidationError(
                "a synchronous call from the store's own loop would deadlock: use the async method"
            )
        return self._submit(loop, make).result()

    def _submit(
        self, loop: asyncio.AbstractEventLoop, make: Callable[[], Awaitable[T]]
    ) -> Future[T]:
        if loop.is_closed():
            raise StoreError("the store's event loop is closed")
        return asyncio.run_coroutine_threadsafe(_call(make), loop)

    def close(self) -> None:
        """Close a store this object opened and stop its thread; idempotent."""
        if self._thread is None:
            return
        try:
            if self._owns_store:
                self.run_sync(lambda: self.store.close())
        finally:
            self._stop()

    async def aclose(self) -> None:
        if self._thread is None:
            if self._owns_store:
                await self.store.close()
            return
        await asyncio.to_thread(self.close)

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()


async def _call(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
