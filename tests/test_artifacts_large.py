"""A 1 GiB artifact, put from chunks and read back with get_stream, never held whole in
memory: measured as the peak RSS (VmHWM) of a separate process doing only that."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from moto_s3 import S3Endpoint

GiB = 1 << 30
MiB = 1 << 20
RSS_LIMIT = 256 * MiB  # a quarter of the object; the process itself starts near 60 MiB

_WORKER = """
import asyncio, hashlib, json, sys
from agent_session_store.urls import open_artifact_store

CHUNK = bytes(range(256)) * 4096  # 1 MiB

async def main(url):
    async with open_artifact_store(url) as store:
        def chunks():
            for i in range(1024):
                yield CHUNK[i % 256 :] + CHUNK[: i % 256]
        await store.put("huge/object.bin", chunks())
        digest, size, biggest = hashlib.sha256(), 0, 0
        async for block in store.get_stream("huge/object.bin", chunk_size=1 << 20):
            digest.update(block)
            size += len(block)
            biggest = max(biggest, len(block))
        stat = await store.stat("huge/object.bin")
        await store.delete("huge/object.bin")
        gone = not await store.exists("huge/object.bin")
    # VmHWM, this process image's own peak: ru_maxrss would include the parent's RSS,
    # which Linux carries into a forked child.
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
    print(json.dumps({"size": size, "sha256": digest.hexdigest(), "biggest": biggest,
                      "stat_size": stat.size, "stat_sha256": stat.sha256,
                      "gone": gone, "peak_rss": peak}))

asyncio.run(main(sys.argv[1]))
"""


def _expected_sha256() -> str:
    chunk = bytes(range(256)) * 4096
    digest = hashlib.sha256()
    for i in range(1024):
        digest.update(chunk[i % 256 :] + chunk[: i % 256])
    return digest.hexdigest()


def _run(url: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _WORKER, url], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _check(result: dict[str, object]) -> None:
    expected = _expected_sha256()
    assert result["size"] == GiB and result["stat_size"] == GiB
    assert result["sha256"] == expected and result["stat_sha256"] == expected
    assert isinstance(result["biggest"], int) and result["biggest"] <= MiB
    assert result["gone"] is True
    assert isinstance(result["peak_rss"], int) and result["peak_rss"] < RSS_LIMIT, result


def test_file_store_streams_1_gib(tmp_path: Path) -> None:
    _check(_run(f"file://{tmp_path}/root"))
    assert list((tmp_path / "root").iterdir()) == []  # deleted: nothing left on disk


def test_s3_store_streams_1_gib(s3_endpoint: S3Endpoint, unique_name: str) -> None:
    _check(_run(s3_endpoint.store_url(f"{unique_name}/")))
