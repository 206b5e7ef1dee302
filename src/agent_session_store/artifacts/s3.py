"""Artifacts in an S3 bucket (contract 4), through aiobotocore.

The object name is ``prefix + key``, byte for byte: aiobotocore sends any key unchanged,
where obstore's path type refuses ``a//b`` and ``a/../b`` and rewrites ``/a`` and ``a/``.

A put is atomic because S3 replaces an object in one step: bytes up to ``multipart_threshold``
(128 MiB) go up in one PutObject; chunked data beyond one part and larger bytes go up as a
multipart upload that becomes visible only when completed (and
is aborted on any failure). The SHA-256 is stored as object metadata (``x-amz-meta-sha256``),
which must be known when the upload starts: chunked data larger than one part is therefore
spooled to an anonymous temp file while it is hashed, so memory stays at a few parts however
large the object. A get is one request up to ``multipart_threshold``; beyond it the rest is
fetched as parallel ranges, each pinned with If-Match to the first
response's ETag, so a concurrent overwrite restarts the read instead of mixing versions.
``get_stream`` is one GET whose connection stays open as long as the caller keeps the
stream open; those connections come from a second client whose pool has no limit, so open
streams can never exhaust the pool every other call waits on (with no timeout).

A create-only put (``if_absent=True``) sends ``If-None-Match: *`` with the PutObject or the
CompleteMultipartUpload that makes the object visible: S3 decides, atomically, and answers
412 to every writer but the first (409 ConditionalRequestConflict, "a conflicting operation
is in flight", is retried). Uploads carry CRC32 checksums that S3 verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote, urlsplit

try:
    import aiohttp
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
except ImportError as _missing:  # exercised by tests/test_imports.py without the extra
    from ..urls import missing_extra

    raise missing_extra("s3", "the s3:// artifact store", _missing) from _missing
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..errors import (
    NotFoundError,
    StorageConnectionFailedError,
    StorageError,
    StoreError,
    ValidationError,
    redact,
)
from ..lifecycle import OpenClose
from ..ports import ArtifactData, ArtifactStat, KeyPage
from ..retry import Retry, RetryPolicy, gave_up
from ..urls import number_options, query_options
from ._common import (
    already_exists,
    check_chunk_size,
    check_data_type,
    check_if_absent,
    check_key,
    check_limit,
    check_no_opts,
    check_prefix,
    closed_error,
    decode_cursor,
    encode_cursor,
    is_async_chunks,
    iter_async_chunks,
    iter_sync_chunks,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["S3ArtifactStore"]

_MiB = 1 << 20
_MIN_PART = 5 * _MiB  # S3's floor for every part but the last
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_SHA_META = "sha256"
_PRECONDITION = frozenset({"PreconditionFailed", "412"})
_CONFLICT = "ConditionalRequestConflict"
# A create-only put retries S3's 409 ("a conflicting write is in flight") for 30 s at most.
CONFLICT_RETRY = RetryPolicy(timeout=30.0, first_delay=0.05, max_delay=1.0)
# A get re-reads from the start when the object is overwritten between its ranged reads.
CHANGED_RETRY = RetryPolicy(attempts=5, timeout=30.0, first_delay=0.0, max_delay=0.0)
_INT_OPTIONS = (
    "part_size",
    "multipart_threshold",
    "concurrency",
    "max_attempts",
    "max_pool_connections",
)
_FLOAT_OPTIONS = ("connect_timeout", "read_timeout")
_STR_OPTIONS = (
    "endpoint_url",
    "region",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "addressing_style",
    "spool_dir",
)


class S3ArtifactStore(OpenClose):
    """``prefix + key`` objects in ``bucket``; credentials from arguments or the usual AWS
    environment variables and config files."""

    backend_name = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        part_size: int = 8 * _MiB,
        multipart_threshold: int = 128 * _MiB,
        concurrency: int = 4,
        max_attempts: int = 3,
        max_pool_connections: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        addressing_style: str | None = None,
        spool_dir: str | None = None,
    ) -> None:
        if type(bucket) is not str or not bucket:
            raise ValidationError("s3 artifact store needs a bucket name")
        if type(prefix) is not str:
            raise ValidationError("s3 prefix must be a str")
        if type(part_size) is not int or part_size < _MIN_PART:
            raise ValidationError(f"part_size must be an int >= {_MIN_PART} (S3's minimum)")
        for name, value in (
            ("concurrency", concurrency),
            ("max_attempts", max_attempts),
            ("max_pool_connections", max_pool_connections),
        ):
            if type(value) is not int or value < 1:
                raise ValidationError(f"{name} must be a positive int, got {value!r}")
        if type(multipart_threshold) is not int or multipart_threshold < part_size:
            raise ValidationError("multipart_threshold must be an int >= part_size")
        if addressing_style not in (None, "auto", "path", "virtual"):
            raise ValidationError("addressing_style must be auto, path or virtual")
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = part_size
        self.multipart_threshold = multipart_threshold
        self.concurrency = concurrency
        self.spool_dir = spool_dir
        self._credentials = {
            k: v
            for k, v in (
                ("aws_access_key_id", aws_access_key_id),
                ("aws_secret_access_key", aws_secret_access_key),
                ("aws_session_token", aws_session_token),
            )
            if v is not None
        }
        s3_config: dict[str, Any] = {}
        if addressing_style is not None:
            s3_config["addressing_style"] = addressing_style
        elif endpoint_url is not None:
            s3_config["addressing_style"] = "path"  # local servers have no bucket DNS names
        options: dict[str, Any] = {
            "s3": s3_config,
            "retries": {"max_attempts": max_attempts, "mode": "standard"},
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_pool_connections": max_pool_connections,
            # CRC32 on every upload (S3 rejects a body damaged in transit) and checked on
            # every download S3 returns a checksum for (whole-object GETs).
            "request_checksum_calculation": "when_supported",
            "response_checksum_validation": "when_supported",
        }
        self._config = AioConfig(**options)
        # An open stream holds its connection until it is read to the end or closed: give
        # streams their own pool without a limit (0 means none to aiohttp), so that however
        # many the caller leaves open, they never exhaust the pool the other calls wait on.
        self._stream_config = AioConfig(**{**options, "max_pool_connections": 0})
        self._client: S3Client | None = None
        self._client_cm: Any = None
        self._stream_client: S3Client | None = None
        self._stream_client_cm: Any = None
        self._closed = False
        self._open_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3ArtifactStore:
        """``s3://[ACCESS_KEY:SECRET@]bucket/prefix?endpoint_url=…&region=…&part_size=…``.

        The prefix is used as written (``s3://b/runs/`` puts ``a`` at ``runs/a``)."""
        parts = urlsplit(url)
        bucket = parts.hostname or ""
        if not bucket:
            raise ValidationError("s3:// URL needs a bucket: s3://bucket/prefix")
        if parts.port is not None:
            raise ValidationError("s3:// URL takes no port; use ?endpoint_url=http://host:port")
        if parts.username:
            options.setdefault("aws_access_key_id", unquote(parts.username))
        if parts.password:
            options.setdefault("aws_secret_access_key", unquote(parts.password))
        opts = query_options(url)
        for name in _STR_OPTIONS:
            if name in opts:
                options.setdefault(name, opts.pop(name))
        number_options(opts, options, dict.fromkeys(_INT_OPTIONS, int))
        number_options(opts, options, dict.fromkeys(_FLOAT_OPTIONS, float))
        if opts:
            raise ValidationError(f"unknown s3:// option(s): {', '.join(sorted(opts))}")
        return cls(bucket, unquote(parts.path[1:]), **options)

    def __repr__(self) -> str:
        where = f", endpoint_url={redact(self.endpoint_url)!r}" if self.endpoint_url else ""
        return f"S3ArtifactStore(bucket={self.bucket!r}, prefix={self.prefix!r}{where})"

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> Self:
        await self._ready("open")
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        managers = [self._client_cm, self._stream_client_cm]
        self._client = self._client_cm = self._stream_client = self._stream_client_cm = None
        for cm in managers:
            if cm is not None:
                with contextlib.suppress(Exception):
                    await cm.__aexit__(None, None, None)

    async def _ready(self, operation: str, *, stream: bool = False) -> S3Client:
        """The client (for ``stream``, the one whose pool open streams use)."""
        if self._closed:
            raise closed_error(self.backend_name, operation)
        client = self._stream_client if stream else self._client
        if client is not None:
            return client
        async with self._open_lock:
            if self._closed:
                raise closed_error(self.backend_name, operation)
            if self._client is None:
                self._client, self._client_cm = await self._connect(operation, self._config)
            if stream and self._stream_client is None:
                self._stream_client, self._stream_client_cm = await self._connect(
                    operation, self._stream_config
                )
            client = self._stream_client if stream else self._client
            assert client is not None
            return client

    async def _connect(self, operation: str, config: AioConfig) -> tuple[S3Client, Any]:
        cm = get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=config,
            aws_access_key_id=self._credentials.get("aws_access_key_id"),
            aws_secret_access_key=self._credentials.get("aws_secret_access_key"),
            aws_session_token=self._credentials.get("aws_session_token"),
        )
        try:
            client = await cm.__aenter__()
        except Exception as exc:
            raise self._wrap(exc, operation) from exc
        return client, cm

    # ------------------------------------------------------------ errors

    def _wrap(self, exc: BaseException, operation: str, key: str | None = None) -> StoreError:
        where = f"s3://{self.bucket}/{self.prefix}{key or ''}"
        details: dict[str, Any] = {"operation": operation}
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            details["s3_code"] = code
            if key is not None and code in _NOT_FOUND:
                return NotFoundError(f"no artifact with key {key!r}", details={"key": key})
            message = error.get("Message") or code
            return StorageError(
                f"s3 {operation} of {where} failed: {code}: {message}", details=details
            )
        if isinstance(
            exc,
            BotoConnectionError
            | ConnectionClosedError
            | ReadTimeoutError
            | aiohttp.ClientConnectionError
            | ConnectionError
            | TimeoutError,
        ):
            return StorageConnectionFailedError(
                f"s3 {operation} of {where}: cannot reach "
                f"{self.endpoint_url or 'the S3 endpoint'}: {exc}",
                details=details,
            )
        if isinstance(exc, NoCredentialsError):
            return StorageError(
                f"s3 {operation} failed: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or put them in the URL)",
                details=details,
            )
        if isinstance(exc, BotoCoreError | OSError | aiohttp.ClientError):
            return StorageError(
                f"s3 {operation} of {where} failed: {type(exc).__name__}: {exc}", details=details
            )
        return StorageError(
            f"s3 {operation} of {where} failed: {type(exc).__name__}: {exc}", details=details
        )

    async def _call(
        self,
        operation: str,
        key: str | None,
        fn: Callable[[S3Client], Awaitable[Any]],
        *,
        stream: bool = False,
    ) -> Any:
        client = await self._ready(operation, stream=stream)
        try:
            return await fn(client)
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, operation, key) from exc

    # ------------------------------------------------------------ put

    async def put(
        self, key: str, data: ArtifactData, *, if_absent: bool = False, **opts: Any
    ) -> None:
        check_key(key)
        check_if_absent(if_absent)
        check_no_opts("put", opts, ("content_type",))
        check_data_type(data)
        extra: dict[str, Any] = {}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        if "content_type" in opts:
            if type(opts["content_type"]) is not str:
                raise ValidationError("content_type must be a str")
            extra["ContentType"] = opts["content_type"]
        name = self.prefix + key
        await self._ready("put")
        if isinstance(data, bytes | bytearray | memoryview):
            blob = data if type(data) is bytes else bytes(data)
            sha = await _sha256(blob)
            if len(blob) <= self.multipart_threshold:
                # Already whole in memory: one request is cheapest up to this size.
                await self._put_single(key, name, blob, sha, extra)
            else:
                view = memoryview(blob)

                async def from_memory(start: int, size: int) -> bytes:
                    return bytes(view[start : start + size])

                await self._multipart(key, name, len(blob), from_memory, sha, extra)
            return
        await self._put_chunks(key, name, data, extra)

    async def _put_single(
        self, key: str, name: str, blob: bytes, sha: str, extra: dict[str, Any]
    ) -> None:
        async def once() -> None:
            await self._call(
                "put",
                key,
                lambda c: c.put_object(
                    Bucket=self.bucket, Key=name, Body=blob, Metadata={_SHA_META: sha}, **extra
                ),
            )

        await self._create_only(key, extra, once)

    async def _create_only(
        self, key: str, extra: dict[str, Any], once: Callable[[], Awaitable[None]]
    ) -> None:
        """Run one write; for a create-only write, 412 is ``already_exists`` and S3's 409
        ("a conflicting write is in flight, retry") is retried until a deadline."""
        if "IfNoneMatch" not in extra:
            await once()
            return
        retry = Retry(CONFLICT_RETRY)
        while True:
            try:
                await once()
                return
            except StorageError as err:
                code = err.details.get("s3_code")
                if code in _PRECONDITION:
                    raise already_exists(key) from None
                if code != _CONFLICT:
                    raise
                if not await retry.pause():
                    raise gave_up(
                        "s3",
                        "put",
                        retry,
                        f"S3 kept answering 409 {_CONFLICT} for {key!r}: another create-only "
                        "write of it stays in flight",
                        s3_code=_CONFLICT,
                    ) from err

    async def _put_chunks(
        self, key: str, name: str, data: ArtifactData, extra: dict[str, Any]
    ) -> None:
        """Keep up to one part in memory; beyond that, spool to disk while hashing."""
        digest = hashlib.sha256()
        buffer = bytearray()
        spool: Any = None
        try:
            chunks = (
                iter_async_chunks(data)  # type: ignore[arg-type]
                if is_async_chunks(data)
                else _aiter_sync(iter_sync_chunks(data))
            )
            async for view in chunks:
                buffer += view
                if len(buffer) < self.part_size:
                    continue
                if spool is None:
                    spool = await asyncio.to_thread(tempfile.TemporaryFile, dir=self.spool_dir)
                block = bytes(buffer)
                buffer.clear()
                await asyncio.to_thread(_spool_write, spool, digest, block)
            if spool is None:
                digest.update(buffer)
                await self._put_single(key, name, bytes(buffer), digest.hexdigest(), extra)
                return
            if buffer:
                await asyncio.to_thread(_spool_write, spool, digest, bytes(buffer))
                buffer.clear()
            size = await asyncio.to_thread(spool.tell)
            fd = spool.fileno()

            async def from_spool(start: int, length: int) -> bytes:
                return await asyncio.to_thread(os.pread, fd, length, start)

            await self._multipart(key, name, size, from_spool, digest.hexdigest(), extra)
        except OSError as exc:
            raise self._wrap(exc, "put", key) from exc
        finally:
            if spool is not None:
                spool.close()

    async def _multipart(
        self,
        key: str,
        name: str,
        size: int,
        read: Callable[[int, int], Awaitable[bytes]],
        sha: str,
        extra: dict[str, Any],
    ) -> None:
        """Invisible until completed; aborted on any failure, so the old object stays."""
        if "IfNoneMatch" in extra and await self._exists_name(key, name):
            raise already_exists(key)  # early, to spare the upload; the completion decides

        async def once() -> None:
            await self._multipart_once(key, name, size, read, sha, extra)

        await self._create_only(key, extra, once)

    async def _exists_name(self, key: str, name: str) -> bool:
        try:
            await self._call("put", key, lambda c: c.head_object(Bucket=self.bucket, Key=name))
        except NotFoundError:
            return False
        return True

    async def _multipart_once(
        self,
        key: str,
        name: str,
        size: int,
        read: Callable[[int, int], Awaitable[bytes]],
        sha: str,
        extra: dict[str, Any],
    ) -> None:
        condition = {k: v for k, v in extra.items() if k == "IfNoneMatch"}
        headers = {k: v for k, v in extra.items() if k != "IfNoneMatch"}
        created = await self._call(
            "put",
            key,
            lambda c: c.create_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                Metadata={_SHA_META: sha},
                ChecksumAlgorithm="CRC32",
                **headers,
            ),
        )
        upload_id = created["UploadId"]
        limit = asyncio.Semaphore(self.concurrency)
        part_size = self.part_size
        count = (size + part_size - 1) // part_size
        parts: list[CompletedPartTypeDef] = [{}] * count

        async def upload(index: int) -> None:
            async with limit:
                start = index * part_size
                body = await read(start, min(part_size, size - start))
                done = await self._call(
                    "put",
                    key,
                    lambda c: c.upload_part(
                        Bucket=self.bucket,
                        Key=name,
                        UploadId=upload_id,
                        PartNumber=index + 1,
                        Body=body,
                        ChecksumAlgorithm="CRC32",
                    ),
                )
                parts[index] = {
                    "PartNumber": index + 1,
                    "ETag": done["ETag"],
                    "ChecksumCRC32": done["ChecksumCRC32"],
                }

        try:
            # Each part is read inside the semaphore: at most `concurrency` are in memory.
            async with asyncio.TaskGroup() as group:
                for i in range(count):
                    group.create_task(upload(i))
            await self._call(
                "put",
                key,
                lambda c: c.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition,
                ),
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._abort(name, upload_id))
            if isinstance(exc, BaseExceptionGroup):
                first = exc.exceptions[0]
                while isinstance(first, BaseExceptionGroup):
                    first = first.exceptions[0]
                raise first from None
            raise

    async def _abort(self, name: str, upload_id: str) -> None:
        client = self._client
        if client is not None:
            await client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)

    # ------------------------------------------------------------ cleanup

    async def cleanup(self, *, older_than: float = 86400.0) -> int:
        """Abort the multipart uploads under this prefix started more than ``older_than``
        seconds ago; return how many. Uploads of killed clients are invisible but stored
        (and billed) until aborted; a bucket lifecycle rule (AbortIncompleteMultipartUpload)
        does the same server-side. An upload still running when it is aborted fails."""
        if type(older_than) not in (int, float) or not older_than >= 0:
            raise ValidationError(f"older_than must be a number >= 0, got {older_than!r}")
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        aborted = 0
        markers: dict[str, str] = {}
        while True:
            page = await self._call(
                "cleanup",
                None,
                lambda c, m=markers: c.list_multipart_uploads(  # type: ignore[misc]
                    Bucket=self.bucket, Prefix=self.prefix, **m
                ),
            )
            for upload in page.get("Uploads", ()):
                if upload["Initiated"] > cutoff:
                    continue
                try:
                    await self._call(
                        "cleanup",
                        None,
                        lambda c, u=upload: c.abort_multipart_upload(  # type: ignore[misc]
                            Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"]
                        ),
                    )
                except StorageError as err:
                    if err.details.get("s3_code") != "NoSuchUpload":
                        raise
                    continue  # completed or aborted meanwhile
                aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            markers = {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }

    # ------------------------------------------------------------ reads

    async def get(self, key: str, **opts: Any) -> bytes:
        check_key(key)
        check_no_opts("get", opts)
        name = self.prefix + key
        retry = Retry(CHANGED_RETRY)
        while True:
            try:
                first = await self._call(
                    "get",
                    key,
                    lambda c: c.get_object(
                        Bucket=self.bucket,
                        Key=name,
                        Range=f"bytes=0-{self.multipart_threshold - 1}",
                    ),
                )
            except StorageError as err:
                if err.details.get("s3_code") != "InvalidRange":
                    raise
                # An empty object has no byte 0 to range over.
                first = await self._call(
                    "get", key, lambda c: c.get_object(Bucket=self.bucket, Key=name)
                )
            head = await self._read_body(first, key)
            total = _total_size(first.get("ContentRange"), len(head))
            if total <= len(head):
                return head
            try:
                return head + await self._get_rest(key, name, first["ETag"], len(head), total)
            except _Changed:
                # overwritten between ranges: read the new version from the start
                if not await retry.pause():
                    raise gave_up(
                        "s3", "get", retry, f"{key!r} kept changing while being read"
                    ) from None

    async def _read_body(self, response: Any, key: str) -> bytes:
        """The whole body. Read as the chunks aiohttp already holds and joined once, which is
        about 10 % faster than the body's own read() for large objects; the length is
        checked against Content-Length like read() does."""
        try:
            async with response["Body"] as body:
                content = getattr(getattr(body, "raw_stream", None), "content", None)
                if content is None:
                    data: bytes = await body.read()
                    return data
                parts = [chunk async for chunk in content.iter_any()]
        except Exception as exc:
            raise self._wrap(exc, "get", key) from exc
        data = b"".join(parts)
        expected = response.get("ContentLength")
        if expected is not None and len(data) != expected:
            raise StorageConnectionFailedError(
                f"s3 get of {key!r} ended after {len(data)} of {expected} bytes",
                details={"operation": "get"},
            )
        return data

    async def _get_rest(self, key: str, name: str, etag: str, start: int, total: int) -> bytes:
        limit = asyncio.Semaphore(self.concurrency)
        step = self.part_size
        ranges = [(s, min(s + step, total) - 1) for s in range(start, total, step)]
        parts: list[bytes] = [b""] * len(ranges)

        async def fetch(i: int, lo: int, hi: int) -> None:
            async with limit:
                try:
                    response = await self._call(
                        "get",
                        key,
                        lambda c: c.get_object(
                            Bucket=self.bucket, Key=name, Range=f"bytes={lo}-{hi}", IfMatch=etag
                        ),
                    )
                except StoreError as err:
                    if err.details.get("s3_code") in ("PreconditionFailed", "412"):
                        raise _Changed from None
                    if isinstance(err, NotFoundError):
                        raise _Changed from None
                    raise
                parts[i] = await self._read_body(response, key)

        try:
            async with asyncio.TaskGroup() as group:
                for i, (lo, hi) in enumerate(ranges):
                    group.create_task(fetch(i, lo, hi))
        except BaseExceptionGroup as group_error:
            first = group_error.exceptions[0]
            raise first from None
        return b"".join(parts)

    async def get_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """One GET read as the caller asks, on the streams' own connection pool (see the
        module docstring); it keeps serving the version it started on."""
        check_key(key)
        check_chunk_size(chunk_size)
        name = self.prefix + key
        response = await self._call(
            "get_stream", key, lambda c: c.get_object(Bucket=self.bucket, Key=name), stream=True
        )
        body = response["Body"]
        try:
            while True:
                # A read returns what the socket has buffered (often far less than asked):
                # gather up to ``chunk_size`` so every chunk but the last is full.
                pieces: list[bytes] = []
                wanted = chunk_size
                while wanted:
                    try:
                        piece: bytes = await body.read(wanted)
                    except Exception as exc:
                        raise self._wrap(exc, "get_stream", key) from exc
                    if not piece:
                        break
                    pieces.append(piece)
                    wanted -= len(piece)
                if not pieces:
                    return
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                if wanted:
                    return
        finally:
            body.close()

    async def delete(self, key: str, **opts: Any) -> None:
        check_key(key)
        check_no_opts("delete", opts)
        name = self.prefix + key
        await self._call("delete", None, lambda c: c.delete_object(Bucket=self.bucket, Key=name))

    async def exists(self, key: str) -> bool:
        check_key(key)
        try:
            await self._head(key, "exists")
        except NotFoundError:
            return False
        return True

    async def _head(self, key: str, operation: str) -> Any:
        name = self.prefix + key
        return await self._call(
            operation, key, lambda c: c.head_object(Bucket=self.bucket, Key=name)
        )

    async def stat(self, key: str) -> ArtifactStat:
        check_key(key)
        head = await self._head(key, "stat")
        sha = head.get("Metadata", {}).get(_SHA_META)
        if not sha:  # written by another tool: hash it, without keeping it in memory
            digest = hashlib.sha256()
            async for block in self.get_stream(key):
                digest.update(block)
            sha = digest.hexdigest()
        modified = head["LastModified"].astimezone(UTC)
        return ArtifactStat(key, int(head["ContentLength"]), sha, modified)

    async def list_keys(
        self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None
    ) -> KeyPage:
        check_prefix(prefix)
        check_limit(limit)
        after = None if cursor is None else decode_cursor(cursor, prefix)
        full = self.prefix + prefix
        cut = len(self.prefix)
        keys: list[str] = []
        token: str | None = None
        while len(keys) <= limit:
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": full,
                "MaxKeys": min(1000, limit + 1 - len(keys)),
            }
            if token is not None:
                args["ContinuationToken"] = token
            elif after is not None:
                args["StartAfter"] = _xml_safe(self.prefix + after)
            page = await self._call(
                "list_keys",
                None,
                lambda c, a=args: c.list_objects_v2(**a),  # type: ignore[misc]
            )
            for item in page.get("Contents", ()):
                key = item["Key"][cut:]
                if after is None or key > after:
                    keys.append(key)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or token is None:
                break
        if len(keys) > limit:
            return KeyPage(keys[:limit], encode_cursor(prefix, keys[limit - 1]))
        return KeyPage(keys, None)


def _xml_safe(start_after: str) -> str:
    """StartAfter cut before the first character XML 1.0 cannot carry: controls other than
    tab/LF/CR and the noncharacters U+FFFE and U+FFFF (servers echo StartAfter in the XML
    response and fail on those). The keys the shorter StartAfter lets through again are
    dropped by the caller."""
    for i, ch in enumerate(start_after):
        if (ch < " " and ch not in "\t\n\r") or ch in "\ufffe\uffff":
            return start_after[:i]
    return start_after


class _Changed(Exception):
    """The object was replaced between two ranged reads."""


def _total_size(content_range: str | None, got: int) -> int:
    """Total object size from ``bytes 0-N/TOTAL`` (absent for an empty object)."""
    if not content_range or "/" not in content_range:
        return got
    total = content_range.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else got


async def _sha256(blob: bytes) -> str:
    if len(blob) < 1 * _MiB:
        return hashlib.sha256(blob).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(blob).hexdigest())


def _spool_write(spool: Any, digest: Any, block: bytes) -> None:
    digest.update(block)
    spool.write(block)


async def _aiter_sync(chunks: Any) -> AsyncIterator[memoryview]:
    for view in chunks:
        yield view
