"""Artifact stores against the plain way of doing the same work, in the same run.

- file: put+get through FileArtifactStore vs os.write + fsync + rename + directory fsync,
  then a read of the same bytes (the same durability the store gives).
- s3: put+get through S3ArtifactStore vs boto3 put_object + get_object, on one local
  moto_server.
- composite: a session append through CompositeSessionStore vs on the session store itself.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent_session_store.artifacts.files import FileArtifactStore
from agent_session_store.composite import CompositeSessionStore
from agent_session_store.memory import InMemorySessionStore
from agent_session_store.models import Event, EventType
from agent_session_store.urls import open_artifact_store, open_session_store

from .common import Row, check_ratio

MB = 1_000_000


async def _best(repeats: int, work: Callable[[], Awaitable[Any]]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        await work()
        best = min(best, time.perf_counter() - start)
    return best


async def _paired(
    repeats: int, ours: Callable[[], Awaitable[Any]], raw: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    """Best times of two workloads run alternately, so drift in machine load hits both."""
    best_ours = best_raw = float("inf")
    for i in range(repeats):
        if i % 2:
            best_raw = min(best_raw, await _best(1, raw))
            best_ours = min(best_ours, await _best(1, ours))
        else:
            best_ours = min(best_ours, await _best(1, ours))
            best_raw = min(best_raw, await _best(1, raw))
    return best_ours, best_raw


def _repeats(size: int, quick: bool) -> int:
    """Small transfers are quick and noisy: more of them, so the best is a clean one."""
    base = 25 if size <= 10 * MB else 7
    return max(3, base // 3) if quick else base


def _raw_file_put_get(directory: Path, data: bytes) -> bytes:
    tmp, final = directory / "raw.tmp", directory / "raw"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    with open(final, "rb", buffering=0) as f:
        return f.read()


async def _file_rows(sizes: list[int], quick: bool) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ass-bench-") as tmp:
        base = Path(tmp)
        (base / "raw").mkdir()
        async with FileArtifactStore(base / "store") as store:

            async def case(size: int) -> Row:
                data = os.urandom(size)

                async def ours() -> None:
                    await store.put("bench/object.bin", data)
                    assert len(await store.get("bench/object.bin")) == size

                async def raw() -> None:
                    got = await asyncio.to_thread(_raw_file_put_get, base / "raw", data)
                    assert len(got) == size

                t_ours, t_raw = await _paired(_repeats(size, quick), ours, raw)
                row = Row(
                    "file",
                    f"put+get {size // MB} MB",
                    2 * size / MB / t_ours,
                    "MB/s",
                    raw=2 * size / MB / t_raw,
                )
                return check_ratio(row, 0.8)

            for size in sizes:
                rows.append(await case(size))
    return rows


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.05)


async def _s3_rows(sizes: list[int], quick: bool) -> list[Row]:
    import boto3

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    proc, endpoint = _start_moto()
    rows = []
    try:
        raw_client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        raw_client.create_bucket(Bucket="bench")
        url = f"s3://bench/ours/?endpoint_url={endpoint}&region=us-east-1"
        async with open_artifact_store(url) as store:

            async def case(size: int) -> Row:
                data = os.urandom(size)

                async def ours() -> None:
                    await store.put("object.bin", data)
                    assert len(await store.get("object.bin")) == size

                def raw_sync() -> None:
                    raw_client.put_object(Bucket="bench", Key="raw/object.bin", Body=data)
                    body = raw_client.get_object(Bucket="bench", Key="raw/object.bin")["Body"]
                    assert len(body.read()) == size

                async def raw() -> None:
                    await asyncio.to_thread(raw_sync)

                t_ours, t_raw = await _paired(_repeats(size, quick), ours, raw)
                row = Row(
                    "s3 (moto)",
                    f"put+get {size // MB} MB",
                    2 * size / MB / t_ours,
                    "MB/s",
                    raw=2 * size / MB / t_raw,
                )
                return check_ratio(row, 0.8)

            for size in sizes:
                rows.append(await case(size))
    finally:
        proc.terminate()
        proc.wait()
    return rows


async def _composite_row(name: str, make: Callable[[], Any], count: int, rounds: int) -> Row:
    direct = make()
    via = CompositeSessionStore(make(), open_artifact_store("memory://"))
    async with direct, via:
        stores = {"direct": direct, "composite": via}
        best = {"direct": float("inf"), "composite": float("inf")}
        for r in range(rounds):
            order = list(stores.items())
            for label, store in order if r % 2 else reversed(order):
                events = [
                    Event(type=EventType.MESSAGE_SENT, session_id=f"s{r}", data={"i": i})
                    for i in range(count)
                ]
                start = time.perf_counter()
                for event in events:
                    await store.append_event(event)
                best[label] = min(best[label], time.perf_counter() - start)
    row = Row(
        name,
        "session append via composite",
        count / best["composite"],
        "ops/s",
        raw=count / best["direct"],
        extra={"overhead_pct": round((best["composite"] / best["direct"] - 1) * 100, 2)},
    )
    return check_ratio(row, 0.95)


async def run(quick: bool) -> list[Row]:
    sizes = [1 * MB, 10 * MB] if quick else [1 * MB, 100 * MB]
    rows = await _file_rows(sizes, quick)
    rows += await _s3_rows(sizes, quick)
    count, rounds = (1000, 6) if quick else (2000, 20)
    rows.append(await _composite_row("memory", InMemorySessionStore, count, rounds))
    try:
        import agent_session_store.sqlite  # noqa: F401
    except ImportError:
        return rows
    tmp = tempfile.mkdtemp(prefix="ass-bench-sqlite-")
    try:
        counter = iter(range(1_000_000))

        def make_sqlite() -> Any:
            return open_session_store(f"sqlite:///{tmp}/s{next(counter)}.db?auto_migrate=true")

        rows.append(await _composite_row("sqlite", make_sqlite, count // 5, rounds))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
