"""The HTTP/SSE API and the web inspector (``pip install 'agent-session-store[server]'``).

``create_app(store)`` returns an ASGI app to mount in any service; ``serve(url)`` runs it
under uvicorn (``agent-session-store serve``), ``serve_workers`` in several processes. All
use only the public store ports, so they serve every backend alike. See docs/server.md.
Imported lazily, so a missing extra is reported by name (``dependency_not_available``) only
when the server is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..urls import missing_extra

if TYPE_CHECKING:
    from .app import create_app
    from .run import check_bind, serve, serve_workers
    from .streams import StreamLimits

__all__ = ["StreamLimits", "check_bind", "create_app", "serve", "serve_workers"]

_WHERE = {
    "create_app": "app",
    "serve": "run",
    "serve_workers": "run",
    "check_bind": "run",
    "StreamLimits": "streams",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        found = importlib.import_module(f"{__name__}.{module}")
    except ImportError as exc:
        raise missing_extra("server", "the web server", exc) from exc
    return getattr(found, name)
