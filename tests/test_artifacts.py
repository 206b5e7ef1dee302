"""The artifact backends against the shared contract, plus what is specific to each."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agent_session_store.artifacts.s3 import S3ArtifactStore
from agent_session_store.errors import StoreError
from agent_session_store.testing import ArtifactStoreContract
from agent_session_store.testing.artifact_contract import FAITHFUL_KEYS, blob
from moto_s3 import S3Endpoint


class TestInMemoryArtifactStore(ArtifactStoreContract):
    durable = False

    @pytest.fixture
    def artifact_url(self) -> str:
        return "memory://"


class TestFileArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_url(self, tmp_path: Path) -> str:
        return f"file://{tmp_path}/artifacts"


class TestS3ArtifactStore(ArtifactStoreContract):
    # moto_server routes requests with werkzeug, whose path pattern does not match a newline:
    # it answers 404 to any request for such a key. Real S3 stores it; the store sends it
    # unchanged (URL-encoded), so this is a limit of the test server only.
    faithful_keys: ClassVar[list[str]] = [k for k in FAITHFUL_KEYS if "\n" not in k]

    @pytest.fixture
    def artifact_url(self, s3_endpoint: S3Endpoint, unique_name: str) -> str:
        # 5 MiB parts (S3 minimum) and threshold, so the 21 MiB object takes the multipart
        # upload and the parallel ranged get.
        return s3_endpoint.store_url(
            f"{unique_name}/", part_size=str(5 << 20), multipart_threshold=str(5 << 20)
        )


# ---------------------------------------------------------------- S3 specifics

MiB = 1 << 20


def _s3_url(s3_endpoint: S3Endpoint, prefix: str, **options: str) -> str:
    return s3_endpoint.store_url(
        prefix, part_size=str(5 * MiB), multipart_threshold=str(5 * MiB), **options
    )


def _uploads(s3_endpoint: S3Endpoint, prefix: str) -> list[dict[str, Any]]:
    client: Any = s3_endpoint.client()
    page = client.list_multipart_uploads(Bucket=s3_endpoint.bucket, Prefix=prefix)
    return list(page.get("Uploads", []))


async def test_s3_create_only_multipart_is_decided_at_completion(
    s3_endpoint: S3Endpoint, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the early existence check (a writer that lost the race after it), the
    CompleteMultipartUpload's If-None-Match refuses, and the upload is aborted."""
    prefix = f"{unique_name}/"
    async with S3ArtifactStore.from_url(_s3_url(s3_endpoint, prefix)) as store:
        await store.put("k", b"first")

        async def never_exists(key: str, name: str) -> bool:
            return False

        monkeypatch.setattr(store, "_exists_name", never_exists)
        with pytest.raises(StoreError) as info:
            await store.put("k", blob(12 * MiB), if_absent=True)
        assert info.value.code == "already_exists"
        assert await store.get("k") == b"first"
        assert _uploads(s3_endpoint, prefix) == []
        await store.put("fresh", blob(12 * MiB, seed=1), if_absent=True)
        assert await store.get("fresh") == blob(12 * MiB, seed=1)


async def test_s3_open_streams_do_not_starve_the_connection_pool(
    s3_endpoint: S3Endpoint, unique_name: str
) -> None:
    url = _s3_url(s3_endpoint, f"{unique_name}/", max_pool_connections="2")
    async with S3ArtifactStore.from_url(url) as store:
        data = [blob(11 * MiB, seed=i) for i in range(4)]
        for i, d in enumerate(data):
            await store.put(f"big/{i}", d)
        await store.put("small", b"other calls must not wait for the streams")
        streams = [store.get_stream(f"big/{i}", chunk_size=64 << 10) for i in range(4)]
        firsts = [await anext(aiter(s)) for s in streams]  # then left open, unread
        assert firsts == [d[: 64 << 10] for d in data]
        async with asyncio.timeout(30):  # before the fix: hangs here forever
            assert await store.get("small") == b"other calls must not wait for the streams"
            assert await store.exists("big/0")
            assert (await store.list_keys("big/")).keys == [f"big/{i}" for i in range(4)]
            rests = [b"".join([b async for b in s]) for s in streams]
        assert [f + r for f, r in zip(firsts, rests, strict=True)] == data


async def test_s3_stream_of_an_object_replaced_midway_fails(
    s3_endpoint: S3Endpoint, unique_name: str
) -> None:
    async with S3ArtifactStore.from_url(_s3_url(s3_endpoint, f"{unique_name}/")) as store:
        await store.put("k", blob(21 * MiB))
        stream = store.get_stream("k", chunk_size=MiB)
        got = [await anext(aiter(stream))]
        await store.put("k", blob(21 * MiB, seed=9))
        with pytest.raises(StoreError) as info:
            await _drain_into(stream, got)
        assert info.value.code == "storage_error" and "replaced" in info.value.message
        assert b"".join(got) == blob(21 * MiB)[: len(b"".join(got))]  # never a mix


async def _drain_into(stream: Any, got: list[bytes]) -> None:
    async for block in stream:
        got.append(block)


async def test_s3_uploads_carry_checksums(s3_endpoint: S3Endpoint, unique_name: str) -> None:
    prefix = f"{unique_name}/"
    async with S3ArtifactStore.from_url(_s3_url(s3_endpoint, prefix)) as store:
        await store.put("single", b"one request")
        await store.put("multi", [blob(6 * MiB), blob(6 * MiB, seed=1)])
        assert await store.get("multi") == blob(6 * MiB) + blob(6 * MiB, seed=1)
    client: Any = s3_endpoint.client()
    for key in ("single", "multi"):
        head = client.head_object(
            Bucket=s3_endpoint.bucket, Key=prefix + key, ChecksumMode="ENABLED"
        )
        assert head.get("ChecksumCRC32"), (key, head)


_KILLED_S3_WRITER = """
import asyncio, sys
from agent_session_store.urls import open_artifact_store

async def main():
    async with open_artifact_store(sys.argv[1]) as store:
        await store.put("victim", bytes(200 << 20))

asyncio.run(main())
"""


def _kill_s3_writer_mid_upload(s3_endpoint: S3Endpoint, url: str, prefix: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_S3_WRITER, url])
    try:
        deadline = time.monotonic() + 60
        while not _uploads(s3_endpoint, prefix):  # readiness poll: the upload has begun
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()


async def test_s3_cleanup_aborts_uploads_of_killed_clients(
    s3_endpoint: S3Endpoint, unique_name: str
) -> None:
    prefix = f"{unique_name}/"
    url = _s3_url(s3_endpoint, prefix, concurrency="1")
    _kill_s3_writer_mid_upload(s3_endpoint, url, prefix)
    assert len(_uploads(s3_endpoint, prefix)) == 1
    async with S3ArtifactStore.from_url(url) as store:
        assert not await store.exists("victim")
        # moto reports every upload as initiated on 2010-11-10: ~16 years is "young" here.
        assert await store.cleanup(older_than=40 * 365 * 86400) == 0
        assert len(_uploads(s3_endpoint, prefix)) == 1
        assert await store.cleanup(older_than=3600) == 1
        assert _uploads(s3_endpoint, prefix) == []
        assert await store.cleanup() == 0
        with pytest.raises(StoreError) as info:
            await store.cleanup(older_than=-1)
        assert info.value.code == "validation_error"
