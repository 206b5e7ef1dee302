"""``serve``: run the app under uvicorn, refusing to expose an unauthenticated server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from ..errors import ValidationError, redact
from ..urls import open_artifact_store, open_session_store
from .app import create_app
from .security import is_loopback
from .streams import StreamHub

__all__ = ["TOKEN_ENV", "check_bind", "serve", "serve_workers"]

TOKEN_ENV = "AGENT_SESSION_STORE_TOKEN"
log = logging.getLogger("agent_session_store.server")


def check_bind(host: str, token: str | None) -> None:
    """Loopback by default; anything reachable from elsewhere needs a token."""
    if not is_loopback(host) and not token:
        raise ValidationError(
            f"refusing to listen on {host!r} without an access token; give one with --token "
            f"(or {TOKEN_ENV}), or bind a loopback address such as 127.0.0.1"
        )


def _checked(host: str, token: str | None, read_only: bool) -> str | None:
    """The token to use, after the rules every way of serving shares."""
    token = token or os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    if not read_only and token is None:
        raise ValidationError("--read-write needs --token: writes are refused without one")
    return token


def _announce(url: str, host: str, port: int, read_only: bool, extra: str) -> None:
    mode = "read-only" if read_only else "read-write"
    print(f"serving {redact(url)} on http://{host}:{port}/ ({mode}{extra})")


class _Server(uvicorn.Server):
    """Ends the live streams first: uvicorn waits for open connections before lifespan
    shutdown, and an SSE connection would otherwise keep it waiting."""

    hub: StreamHub | None = None

    async def shutdown(self, sockets: Any = None) -> None:
        if self.hub is not None:
            await self.hub.close()
        await super().shutdown(sockets=sockets)


async def serve(
    url: str,
    *,
    artifacts_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    read_only: bool = True,
    ready: asyncio.Event | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve in this process (``sockets``: already bound, as a worker of
    :func:`serve_workers` gets them; the address is then only reported)."""
    token = _checked(host, token, read_only)
    store = open_session_store(url)
    artifacts = open_artifact_store(artifacts_url) if artifacts_url else None
    try:
        await store.open()
        app = create_app(store, artifacts=artifacts, read_only=read_only, token=token)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="info",
            access_log=False,  # query strings may hold keys and ids; keep them out of logs
            timeout_graceful_shutdown=5,
            lifespan="on",
        )
        server = _Server(config)
        server.hub = app.state.hub
        # What is loaded by now lives as long as the process: a full collection (~34,000
        # objects, 6-17 ms with the loop stalled) need not walk it again (gc.freeze).
        gc.collect()
        gc.freeze()
        if sockets is None:
            _announce(url, host, port, read_only, "")
        if ready is not None:
            ready.set()
        await server.serve(sockets=sockets)
    finally:
        await store.close()
        if artifacts is not None:
            await artifacts.close()


# ---------------------------------------------------------------- several worker processes

#: How long stopped workers get to end their streams and requests before they are killed.
_STOP_WAIT = 15.0


def serve_workers(
    url: str,
    *,
    workers: int,
    artifacts_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    read_only: bool = True,
) -> int:
    """Serve from ``workers`` processes sharing one listening socket; returns the exit code.

    One process answers on one core (the server is CPU-bound past ~1,500 requests/s); each
    worker is a whole :func:`serve` with its own store connection, and live streams still
    see every write, since every backend but memory wakes readers across processes. The
    store is opened once here first (so ``auto_migrate`` runs once, not in a race). The
    workers stop together: SIGINT or SIGTERM stops them all, and so does one worker
    dying, with a non-zero exit, for the process manager to restart the server.
    """
    if type(workers) is not int or workers < 1:
        raise ValidationError(f"workers must be a positive int, got {workers!r}")
    token = _checked(host, token, read_only)
    for kind, where in (("session store", url), ("artifact store", artifacts_url)):
        if where is not None and urlsplit(where).scheme.lower() == "memory":
            raise ValidationError(
                f"a memory:// {kind} lives in one process: several workers need one they "
                "share (sqlite, postgresql, redis; file or s3 for artifacts)"
            )
    asyncio.run(_open_once(url, artifacts_url))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)
    multiprocessing.allow_connection_pickling()
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    options = {"artifacts_url": artifacts_url, "host": host, "port": port}
    procs = [
        spawn.Process(
            target=_worker,
            args=(url, options, token, read_only, listener),
            name=f"agent-session-store-worker-{n}",
        )
        for n in range(workers)
    ]
    stopping: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda sig, _frame: stopping.append(sig))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    started: list[Any] = []
    try:
        for proc in procs:
            proc.start()
            started.append(proc)
        _announce(url, host, port, read_only, f", {workers} workers")
        while not stopping and all(p.exitcode is None for p in procs):
            wait([p.sentinel for p in procs], timeout=0.2)  # a signal is seen within 0.2 s
        return _stop(started, failed=not stopping)
    except BaseException:
        _stop(started, failed=False)  # never leave a worker behind
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when installed (the ``server`` extra brings it), else asyncio's."""
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.new_event_loop
    return None


async def _open_once(url: str, artifacts_url: str | None) -> None:
    """Open and close the stores: a wrong URL or an unreachable server fails here, once."""
    async with open_session_store(url):
        pass
    if artifacts_url is not None:
        async with open_artifact_store(artifacts_url):
            pass


def _worker(
    url: str, options: dict[str, Any], token: str | None, read_only: bool, listener: Any
) -> None:
    """One worker process: :func:`serve` on the inherited socket."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(
            serve(
                url,
                artifacts_url=options["artifacts_url"],
                host=options["host"],
                port=options["port"],
                token=token,
                read_only=read_only,
                sockets=[listener],
            )
        )


def _stop(procs: list[Any], *, failed: bool) -> int:
    """SIGTERM to every worker still running (uvicorn's graceful stop), then a bounded wait,
    then SIGKILL for any that did not end."""
    for proc in procs:
        if proc.exitcode is None:
            proc.terminate()
    deadline = time.monotonic() + _STOP_WAIT
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.exitcode is None:
            log.warning("worker %s did not stop in %.0f s; killed", proc.pid, _STOP_WAIT)
            proc.kill()
            proc.join()
    if failed:
        codes = [p.exitcode for p in procs]
        log.error("a worker stopped (exit codes %s): the server stops", codes)
        print(f"a worker stopped (exit codes {codes}): the server stops")
        return 1
    return 0
