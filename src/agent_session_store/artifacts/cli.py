"""``agent-session-store artifacts put|get|ls|rm|stat|cleanup``: artifact stores from the shell.

Transfers stream in 1 MiB chunks both ways, so an artifact of any size passes through a
small, constant amount of memory; a progress bar shows on a terminal for large ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..errors import StoreError
from ..urls import open_artifact_store

__all__ = ["main", "register"]

CHUNK = 1 << 20
PROGRESS_MIN = 8 << 20  # smaller transfers finish before a bar would be worth drawing


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``artifacts`` command group to a CLI's subcommands."""
    group = subparsers.add_parser("artifacts", help="put, get, list, stat and remove artifacts")
    commands = group.add_subparsers(dest="artifacts_command", required=True, metavar="COMMAND")

    def command(name: str, helptext: str, func: Callable[[argparse.Namespace], int]) -> Any:
        p = commands.add_parser(name, help=helptext)
        p.add_argument("store_url", metavar="URL", help="memory://, file:///root, s3://bucket/…")
        p.set_defaults(func=func)
        return p

    p = command("put", "store FILE (or stdin with -) under KEY", _put)
    p.add_argument("key", help="the artifact's key (any text, at most 1024 UTF-8 bytes)")
    p.add_argument("source", metavar="FILE", help="a file, or - for stdin")
    p.add_argument(
        "--if-absent", action="store_true", help="only create: fail if KEY already exists"
    )
    p = command("get", "write KEY's bytes to stdout or -o FILE", _get)
    p.add_argument("key", help="the artifact's key")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p = command("ls", "list keys, optionally under PREFIX", _ls)
    p.add_argument("prefix", nargs="?", default="", help="only keys starting with this")
    p.add_argument("--json", action="store_true", help="one JSON array")
    p = command("rm", "remove KEY (absent is fine)", _rm)
    p.add_argument("key", help="the artifact's key")
    p = command("stat", "size, SHA-256 and modification time of KEY", _stat)
    p.add_argument("key", help="the artifact's key")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p = command(
        "cleanup",
        "remove what killed writers left (file temp files, S3 incomplete multipart uploads)",
        _cleanup,
    )
    p.add_argument(
        "--older-than",
        type=float,
        metavar="SECONDS",
        default=None,
        help="only leftovers at least this old (default: the store's grace period)",
    )


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def _progress(total: int | None, label: str) -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal or (total is not None and total < PROGRESS_MIN),
    )


async def _read_chunks(stream: IO[bytes], progress: Progress, task: Any) -> AsyncIterator[bytes]:
    while True:
        block = await asyncio.to_thread(stream.read, CHUNK)
        if not block:
            return
        progress.advance(task, len(block))
        yield block


def _put(args: argparse.Namespace) -> int:
    async def run() -> int:
        if args.source == "-":
            stream: IO[bytes] = sys.stdin.buffer
            total: int | None = None
        else:
            stream = await asyncio.to_thread(open, args.source, "rb")
            total = os.fstat(stream.fileno()).st_size
        try:
            async with open_artifact_store(args.store_url) as store:
                with _progress(total, f"put {args.key}") as progress:
                    task = progress.add_task(f"put {args.key}", total=total)
                    await store.put(
                        args.key, _read_chunks(stream, progress, task), if_absent=args.if_absent
                    )
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        return 0

    return _run(run())


def _get(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with open_artifact_store(args.store_url) as store:
            total = (await store.stat(args.key)).size
            # Opened only once the key is known to exist, so a miss leaves no empty file.
            out: IO[bytes] = (
                await asyncio.to_thread(open, args.output, "wb")
                if args.output
                else sys.stdout.buffer
            )
            try:
                with _progress(total, f"get {args.key}") as progress:
                    task = progress.add_task(f"get {args.key}", total=total)
                    async for block in store.get_stream(args.key, chunk_size=CHUNK):
                        await asyncio.to_thread(out.write, block)
                        progress.advance(task, len(block))
                out.flush()
            finally:
                if args.output:
                    out.close()
        return 0

    return _run(run())


def _ls(args: argparse.Namespace) -> int:
    async def run() -> int:
        keys: list[str] = []
        async with open_artifact_store(args.store_url) as store:
            cursor = None
            while True:
                page = await store.list_keys(args.prefix, limit=1000, cursor=cursor)
                if args.json:
                    keys.extend(page.keys)
                else:
                    for key in page.keys:
                        print(key)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        if args.json:
            print(json.dumps(keys, ensure_ascii=False))
        return 0

    return _run(run())


def _rm(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with open_artifact_store(args.store_url) as store:
            await store.delete(args.key)
        return 0

    return _run(run())


def _stat(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with open_artifact_store(args.store_url) as store:
            st = await store.stat(args.key)
        doc = {
            "key": st.key,
            "size": st.size,
            "sha256": st.sha256,
            "modified_at": st.modified_at.isoformat(),
        }
        if args.json:
            print(json.dumps(doc, ensure_ascii=False))
        else:
            for name, value in doc.items():
                print(f"{name}: {value}")
        return 0

    return _run(run())


def _cleanup(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with open_artifact_store(args.store_url) as store:
            options = {} if args.older_than is None else {"older_than": args.older_than}
            cleanup = getattr(store, "cleanup", None)  # stores that leave debris have one
            removed = 0 if cleanup is None else await cleanup(**options)
        print(f"removed {removed}")
        return 0

    return _run(run())


def main(argv: list[str] | None = None) -> int:
    """``python -m agent_session_store.artifacts.cli …``: the same commands, stand-alone."""
    parser = argparse.ArgumentParser(prog="agent-session-store")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if err.code == "validation_error" else 1


if __name__ == "__main__":
    raise SystemExit(main())
