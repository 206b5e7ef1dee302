"""``serve``: run the app under uvicorn, refusing to expose an unauthenticated server."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from typing import Any

import uvicorn

from ..errors import ValidationError, redact
from ..urls import open_artifact_store, open_session_store
from .app import create_app
from .security import is_loopback
from .streams import StreamHub

__all__ = ["TOKEN_ENV", "check_bind", "serve"]

TOKEN_ENV = "AGENT_SESSION_STORE_TOKEN"
log = logging.getLogger("agent_session_store.server")


def check_bind(host: str, token: str | None) -> None:
    """Loopback by default; anything reachable from elsewhere needs a token."""
    if not is_loopback(host) and not token:
        raise ValidationError(
            f"refusing to listen on {host!r} without an access token; give one with --token "
            f"(or {TOKEN_ENV}), or bind a loopback address such as 127.0.0.1"
        )


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
) -> None:
    token = token or os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    if not read_only and token is None:
        raise ValidationError("--read-write needs --token: writes are refused without one")
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
        mode = "read-only" if read_only else "read-write"
        print(f"serving {redact(url)} on http://{host}:{port}/ ({mode})")
        if ready is not None:
            ready.set()
        await server.serve()
    finally:
        await store.close()
        if artifacts is not None:
            await artifacts.close()
