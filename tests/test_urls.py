"""Opening artifact stores and composites by URL (contract 6): routing, bad URLs, missing
extras, and no password ever showing in an error, a log record or a repr."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_session_store.artifacts.files import FileArtifactStore
from agent_session_store.artifacts.memory import InMemoryArtifactStore
from agent_session_store.artifacts.s3 import S3ArtifactStore
from agent_session_store.composite import CompositeSessionStore
from agent_session_store.errors import StoreError
from agent_session_store.urls import open_artifact_store, open_session_store, open_store
from moto_s3 import S3Endpoint

SECRET = "hunter2"


def test_each_scheme_opens_its_backend(tmp_path: Path) -> None:
    assert isinstance(open_artifact_store("memory://"), InMemoryArtifactStore)
    store = open_artifact_store(f"file://{tmp_path}/with%20space?fsync=false")
    assert isinstance(store, FileArtifactStore)
    assert store.root == tmp_path / "with space" and store.fsync is False
    assert isinstance(open_artifact_store("file://localhost/abs"), FileArtifactStore)
    s3 = open_artifact_store(
        "s3://bucket/some/prefix/?endpoint_url=http://127.0.0.1:9&region=eu-west-1"
        "&part_size=6291456&concurrency=2"
    )
    assert isinstance(s3, S3ArtifactStore)
    assert (s3.bucket, s3.prefix, s3.region, s3.part_size, s3.concurrency) == (
        "bucket",
        "some/prefix/",
        "eu-west-1",
        6 << 20,
        2,
    )
    composite = open_store("memory://", "memory://")
    assert isinstance(composite, CompositeSessionStore)


async def test_opened_stores_work(
    tmp_path: Path, s3_endpoint: S3Endpoint, unique_name: str
) -> None:
    for url in ("memory://", f"file://{tmp_path}", s3_endpoint.store_url(unique_name + "/")):
        async with open_store("memory://", url) as store:
            await store.put("k", b"v")
            assert await store.get("k") == b"v"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/x",
        "gs://bucket/x",
        "no scheme at all",
        "file:relative/path",
        "file://otherhost/abs",
        "file://",
        "s3://",
        "s3:///prefix-only",
        "s3://bucket:9000/p",
        "s3://bucket/p?part_size=12",
        "s3://bucket/p?part_size=big",
        "s3://bucket/p?addressing_style=sideways",
        "s3://bucket/p?unknown_option=1",
        "memory://?x=1",
        "file:///abs?fsync=maybe",
        "file:///abs?bogus=1",
        "",
        "http://[::1",
    ],
)
def test_bad_urls_are_validation_errors(url: str) -> None:
    with pytest.raises(StoreError) as info:
        open_artifact_store(url)
    assert info.value.code == "validation_error", str(info.value)


def test_non_str_url() -> None:
    with pytest.raises(StoreError) as info:
        open_artifact_store(b"memory://")  # type: ignore[arg-type]
    assert info.value.code == "validation_error"


_MISSING_EXTRA = """
import json, sys
sys.modules[sys.argv[1]] = None  # the driver is "not installed"
from agent_session_store.errors import StoreError
from agent_session_store.urls import open_artifact_store, open_session_store
opener = open_artifact_store if sys.argv[3] == "artifact" else open_session_store
try:
    opener(sys.argv[2])
except StoreError as err:
    print(json.dumps({"code": err.code, "message": err.message, "details": err.details}))
else:
    print(json.dumps({"code": None}))
"""


@pytest.mark.parametrize(
    ("module", "url", "kind", "extra"),
    [
        ("aiobotocore", "s3://bucket/p", "artifact", "s3"),
        ("aiohttp", "s3://bucket/p", "artifact", "s3"),
        ("asyncpg", "postgresql://u:hunter2@127.0.0.1:1/x", "session", "postgres"),
        ("redis", "redis://:hunter2@127.0.0.1:1/0", "session", "redis"),
    ],
)
def test_missing_extra_is_named(module: str, url: str, kind: str, extra: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _MISSING_EXTRA, module, url, kind],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["code"] == "dependency_not_available", out.stdout + out.stderr
    assert f"agent-session-store[{extra}]" in result["message"]
    assert result["details"]["extra"] == extra
    assert SECRET not in out.stdout + out.stderr


def _no_secret(*texts: object) -> None:
    for text in texts:
        assert SECRET not in str(text), text


async def _fail_and_collect(store: Any, call: Any) -> StoreError:
    with pytest.raises(StoreError) as info:
        async with store:
            await call(store)
    return info.value


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:hunter2@127.0.0.1:1/x",
        "postgres://u:hunter2@127.0.0.1:1/x?sslmode=disable",
        "redis://:hunter2@127.0.0.1:1/0",
        "redis://user:hunter2@127.0.0.1:1/0",
    ],
)
async def test_session_store_passwords_never_show(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = open_session_store(url)
    _no_secret(repr(store), str(store))
    err = await _fail_and_collect(store, lambda s: s.get_session("x"))
    assert err.code == "storage_connection_failed", str(err)
    _no_secret(err, repr(err), err.details, repr(store))
    _no_secret(*(r.getMessage() for r in caplog.records))
    composite = open_store(url, "memory://")
    _no_secret(repr(composite))
    scheme = url.split("://")[0]
    with pytest.raises(StoreError) as info:
        open_session_store(f"{scheme}://u:{SECRET}@[::1/x")  # malformed: bad IPv6 host
    assert info.value.code == "validation_error"
    _no_secret(info.value, info.value.details)


async def test_s3_secrets_never_show(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for url in (
        "s3://AKIDEXAMPLE:hunter2@bucket/p?endpoint_url=http://127.0.0.1:1&max_attempts=1",
        "s3://bucket/p?aws_access_key_id=AKID&aws_secret_access_key=hunter2"
        "&endpoint_url=http://127.0.0.1:1&max_attempts=1",
    ):
        store = open_artifact_store(url)
        _no_secret(repr(store), str(store), repr(open_store("memory://", url)))
        err = await _fail_and_collect(store, lambda s: s.get("k"))
        assert err.code == "storage_connection_failed", str(err)
        _no_secret(err, repr(err), err.details)
    with pytest.raises(StoreError) as info:
        open_artifact_store("s3://bucket/p?aws_secret_access_key=hunter2&bogus=1")
    assert info.value.code == "validation_error"
    _no_secret(info.value)
    with pytest.raises(StoreError) as info:
        open_artifact_store("s3://AKID:hunter2@bucket:99/p")
    _no_secret(info.value)
    _no_secret(*(r.getMessage() for r in caplog.records))
    _no_secret(*(str(r.args) for r in caplog.records))


async def test_s3_errors_map_to_codes(s3_endpoint: S3Endpoint, unique_name: str) -> None:
    missing_bucket = s3_endpoint.store_url("p/").replace(s3_endpoint.bucket, "no-such-bucket")
    async with open_artifact_store(missing_bucket) as store:
        with pytest.raises(StoreError) as info:
            await store.put("k", b"v")
        assert info.value.code == "storage_error" and "NoSuchBucket" in info.value.message
        with pytest.raises(StoreError) as info:
            await store.get("k")
        assert info.value.code in ("storage_error", "not_found")
    async with open_artifact_store(s3_endpoint.store_url(unique_name + "/")) as store:
        with pytest.raises(StoreError) as info:
            await store.get("absent")
        assert info.value.code == "not_found"
        await store.delete("absent")


def test_an_empty_url_says_what_a_url_looks_like() -> None:
    """Issue 14.10: `open_session_store("")` tells the reader what to write instead."""
    with pytest.raises(StoreError) as info:
        open_session_store("")
    assert info.value.code == "validation_error"
    for example in ("memory://", "sqlite:///", "postgresql://", "redis://"):
        assert example in info.value.message
    assert "empty string" in info.value.message
    with pytest.raises(StoreError) as info:
        open_artifact_store("")
    for example in ("memory://", "file:///", "s3://"):
        assert example in info.value.message
