"""``create_app``: the ASGI application over any SessionStore (and optional ArtifactStore)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ..errors import StoreError
from ..ports import ArtifactStore, EventsJSON, SessionStore
from . import api, views
from .context import Context
from .errors import status_for
from .openapi import openapi
from .security import Guard
from .streams import RAW_SEND, StreamHub, StreamLimits

__all__ = ["create_app"]

log = logging.getLogger("agent_session_store.server")
_HERE = Path(__file__).parent


class _Segment(Convertor[str]):
    """One percent-encoded path segment, decoded: ids may contain "/" (sent as %2F)."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("seg", _Segment())


def _routes() -> list[Route | Mount]:
    s = "/api/sessions/{session_id:seg}"
    # Tried in order, a regex each: the busiest (a session's API) first. No two patterns
    # overlap, so the order changes nothing else.
    return [
        Route(s, api.get_session, methods=["GET"]),
        Route(s, api.put_session, methods=["PUT"]),
        Route(s + "/stats", api.get_stats),
        Route(s + "/runs", api.list_runs),
        Route(s + "/events", api.list_events, methods=["GET"]),
        Route(s + "/events", api.append_events, methods=["POST"]),
        Route(s + "/events/stream", api.stream_events),
        Route(s + "/visible", api.visible_events),
        Route("/api/openapi.json", openapi),
        Route("/api/sessions", api.list_sessions),
        Route("/api/runs/{run_id:seg}", api.get_run, methods=["GET"]),
        Route("/api/runs/{run_id:seg}", api.put_run, methods=["PUT"]),
        Route("/api/events", api.search_events),
        Route("/api/usage", api.usage),
        Route("/api/cost", api.cost),
        Route("/api/artifacts", api.list_artifacts, methods=["GET"]),
        Route("/api/artifacts", api.put_artifact, methods=["PUT"]),
        Route("/api/artifacts/stat", api.stat_artifact),
        Route("/api/artifacts/download", api.download_artifact),
        Route("/", views.sessions_page, name="sessions"),
        Route("/sessions/{session_id:seg}", views.session_page, name="session"),
        Route("/sessions/{session_id:seg}/timeline", views.timeline_fragment),
        Route("/artifacts", views.artifacts_page, name="artifacts"),
        Route("/artifacts/view", views.artifact_page, name="artifact"),
        Route("/login", views.login_page, methods=["GET"]),
        Route("/login", views.login_submit, methods=["POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]


def _wants_json(request: Request) -> bool:
    root = request.scope.get("root_path", "")
    return request.url.path[len(root) :].startswith("/api/") or request.method != "GET"


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    status = status_for(exc)
    if status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc)
    if not _wants_json(request):
        return views.error_page(request, exc, status)
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.code == "sequence_conflict":
        body["details"] = exc.details
    return JSONResponse(body, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    err = StoreError(str(exc.detail))
    err.code = code  # type: ignore[misc]
    if not _wants_json(request):
        return views.error_page(request, err, exc.status_code)
    return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code)


async def _crash(request: Request, exc: Exception) -> Response:
    # The exception's text may quote stored values or a URL: it goes to the log only.
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return JSONResponse({"code": "internal_error", "message": "internal server error"}, 500)


class _App(Starlette):
    """Keeps the server's own ``send`` in the scope, under every middleware, so a live SSE
    stream can find the connection it writes to (streams.py); nothing else uses it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope[RAW_SEND] = send
        try:
            await super().__call__(scope, receive, send)
        finally:
            # uvicorn's send is a method of the request's cycle, which holds this scope: left
            # in, the two made a reference cycle per request that only the garbage collector
            # freed, and its full passes (25-47 ms each, about one a second under load) were
            # most of the API's p99 (bench/server.py, issue 11).
            scope.pop(RAW_SEND, None)


def create_app(
    store: SessionStore,
    *,
    artifacts: ArtifactStore | None = None,
    read_only: bool = True,
    token: str | None = None,
    stream_limits: StreamLimits | None = None,
    max_body_bytes: int = 16 << 20,
    max_artifact_bytes: int = 64 << 20,
) -> Starlette:
    """An ASGI app serving ``store``; the caller keeps owning (and closes) the stores.

    Writes are refused unless ``read_only=False`` and a ``token`` is set; with a token every
    request needs it (``Authorization: Bearer``, or the cookie the login page sets for
    reads). ``app.state.hub.close()`` ends every live stream; the app's lifespan does it at
    shutdown, and ``serve`` does it before the server waits for open connections.
    """
    if token is not None and (type(token) is not str or not token):
        raise ValueError("token must be a non-empty str or None")
    if artifacts is None and isinstance(store, ArtifactStore):
        artifacts = store  # a composite store is both
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    hub = StreamHub(store, stream_limits)
    events_json = store if isinstance(store, EventsJSON) else None  # asked once: ~3 us
    ctx = Context(store, artifacts, hub, read_only, token, env, events_json=events_json)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await hub.close()

    app = _App(
        routes=_routes(),
        middleware=[
            Middleware(
                Guard,
                token=token,
                read_only=read_only,
                max_body_bytes=max_body_bytes,
                max_artifact_bytes=max_artifact_bytes,
            )
        ],
        exception_handlers={
            StoreError: _store_error,
            HTTPException: _http_error,
            Exception: _crash,
        },
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.hub = hub
    return app
