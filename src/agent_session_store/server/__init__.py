"""The HTTP/SSE API and the web inspector (``pip install 'agent-session-store[server]'``).

``create_app(store)`` returns an ASGI app to mount in any service; ``serve(url)`` runs it
under uvicorn (``agent-session-store serve``). Both use only the public store ports, so they
serve every backend alike. See docs/server.md.
"""

from __future__ import annotations

from typing import Any

from ..errors import DependencyNotAvailableError

try:
    from .app import create_app
    from .run import check_bind, serve
    from .streams import StreamLimits
except ImportError as exc:  # pragma: no cover - only without the extra
    _missing = exc

    def _absent(*args: Any, **kwargs: Any) -> Any:
        raise DependencyNotAvailableError(
            f"the web server needs the 'server' extra: pip install 'agent-session-store[server]' ({_missing})"
        )

    create_app = serve = check_bind = StreamLimits = _absent  # type: ignore[assignment]

__all__ = ["StreamLimits", "check_bind", "create_app", "serve"]
