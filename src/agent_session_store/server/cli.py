"""The ``serve`` subcommand; importable without the ``server`` extra (checked when run)."""

from __future__ import annotations

import argparse
import asyncio

__all__ = ["register"]


def _serve(args: argparse.Namespace) -> int:
    """Runs its own loop: uvloop when installed (the extra brings it), else asyncio's."""
    from . import serve, serve_workers  # dependency_not_available without the extra
    from .run import loop_factory

    if args.workers != 1:
        return serve_workers(
            args.serve_url or args.url,
            workers=args.workers,
            artifacts_url=args.artifacts_url,
            host=args.host,
            port=args.port,
            token=args.token,
            read_only=not args.read_write,
        )
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(
            serve(
                args.serve_url or args.url,
                artifacts_url=args.artifacts_url,
                host=args.host,
                port=args.port,
                token=args.token,
                read_only=not args.read_write,
            )
        )
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser(
        "serve", help="HTTP/SSE API and web inspector (needs the 'server' extra)"
    )
    p.add_argument("--url", dest="serve_url", help="session store URL (default: the global --url)")
    p.add_argument("--artifacts", dest="artifacts_url", help="artifact store URL (file://, s3://)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address; other than loopback needs --token (default: %(default)s)",
    )
    p.add_argument("--port", type=int, default=8765, help="TCP port (default: %(default)s)")
    p.add_argument(
        "--token",
        default=None,
        help="bearer token every request needs; required for a non-loopback --host "
        "(default: $AGENT_SESSION_STORE_TOKEN, else none)",
    )
    p.add_argument(
        "--read-write", action="store_true", help="enable the write endpoints (needs a token)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port, one core each; not for memory:// (default: 1)",
    )
    p.set_defaults(func=_serve)
