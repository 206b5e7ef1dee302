"""Fixtures for the server tests: an in-process ASGI client, a real uvicorn server in a
thread (its own event loop, like production), and Debian's chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_session_store import open_artifact_store, open_session_store
from agent_session_store.ports import ArtifactStore, SessionStore
from agent_session_store.server.app import create_app
from agent_session_store.server.run import _Server
from agent_session_store.server.streams import StreamHub

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def memory_store() -> AsyncIterator[SessionStore]:
    async with open_session_store("memory://") as store:
        yield store


@pytest.fixture
async def memory_artifacts() -> AsyncIterator[ArtifactStore]:
    async with open_artifact_store("memory://") as store:
        yield store


def asgi_client(app: Any, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    )


class LiveServer:
    """uvicorn serving create_app(...) on 127.0.0.1 in a thread with its own loop."""

    def __init__(
        self, url: str, artifacts_url: str | None = None, http: str = "auto", **app_kwargs: Any
    ) -> None:
        self.url = url
        self.http = http  # uvicorn's HTTP implementation: "httptools" (auto) or "h11"
        self.artifacts_url = artifacts_url
        self.app_kwargs = app_kwargs
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.hub: StreamHub | None = None
        self.store: SessionStore | None = None
        self.server: _Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        import uvicorn

        self.loop = asyncio.get_running_loop()
        store = open_session_store(self.url)
        artifacts = open_artifact_store(self.artifacts_url) if self.artifacts_url else None
        try:
            await store.open()
            self.store = store
            app = create_app(store, artifacts=artifacts, **self.app_kwargs)
            self.hub = app.state.hub
            config = uvicorn.Config(
                app,
                log_level="warning",
                lifespan="on",
                timeout_graceful_shutdown=10,
                http=self.http,
            )
            self.server = _Server(config)
            self.server.hub = self.hub
            self._started.set()
            await self.server.serve(sockets=[self.sock])
        finally:
            await store.close()
            if artifacts is not None:
                await artifacts.close()

    def start(self) -> LiveServer:
        self.thread.start()
        assert self._started.wait(20), "server did not start"
        if self._error is not None:
            raise self._error
        deadline = 200
        while deadline and not (self.server is not None and self.server.started):
            threading.Event().wait(0.05)
            deadline -= 1
        assert self.server is not None and self.server.started
        return self

    def call(self, make: Any, timeout: float = 30) -> Any:
        """Run ``make()`` (a coroutine factory) on the server's loop, e.g. to write to a
        memory store the server holds."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "server did not stop"


@pytest.fixture
def live_sqlite(tmp_path: Path) -> Iterator[LiveServer]:
    db = tmp_path / "store.db"
    server = LiveServer(
        f"sqlite:///{db}?auto_migrate=true", f"file://{tmp_path / 'artifacts'}"
    ).start()
    server.db = db  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install -y chromium)")
    return CHROMIUM


def run_async(make: Any) -> Any:
    """Run ``make()`` (a coroutine factory) to completion on a fresh loop in a thread:
    Playwright's sync API keeps a loop running in the test's own thread."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(make()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(120)
    if error:
        raise error[0]
    return result[0] if result else None
