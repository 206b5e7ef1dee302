"""In-memory artifact store: for tests, notebooks and single-process tools.

Objects live in this process only. A put gathers its chunks first and swaps the finished
object in with one dict assignment, so a reader never sees a part of it.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right, insort
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Self

from ..errors import NotFoundError, ValidationError
from ..lifecycle import OpenClose
from ..ports import ArtifactData, ArtifactStat, KeyPage
from ..urls import query_options
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

__all__ = ["InMemoryArtifactStore"]


class _Object:
    __slots__ = ("data", "modified_at", "sha256")

    def __init__(self, data: bytes, sha256: str) -> None:
        self.data = data
        self.sha256 = sha256
        self.modified_at = datetime.now(UTC)


class InMemoryArtifactStore(OpenClose):
    backend_name = "memory"

    def __init__(self) -> None:
        self._objects: dict[str, _Object] = {}
        self._keys: list[str] = []  # sorted, for list_keys
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> InMemoryArtifactStore:
        """``memory://``: a new, empty store every time."""
        if query_options(url) or options:
            raise ValidationError("memory:// artifact stores take no options")
        return cls()

    def __repr__(self) -> str:
        return f"InMemoryArtifactStore({len(self._objects)} objects)"

    async def open(self) -> Self:
        if self._closed:
            raise closed_error(self.backend_name, "open")
        return self

    async def close(self) -> None:
        self._closed = True
        self._objects.clear()
        self._keys.clear()

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise closed_error(self.backend_name, operation)

    def _found(self, key: str) -> _Object:
        obj = self._objects.get(key)
        if obj is None:
            raise NotFoundError(f"no artifact with key {key!r}", details={"key": key})
        return obj

    async def put(
        self, key: str, data: ArtifactData, *, if_absent: bool = False, **opts: Any
    ) -> None:
        check_key(key)
        check_if_absent(if_absent)
        check_no_opts("put", opts)
        check_data_type(data)
        self._check_open("put")
        if if_absent and key in self._objects:
            raise already_exists(key)  # early: the data need not be read
        digest = hashlib.sha256()
        parts: list[bytes] = []
        if is_async_chunks(data):
            async for view in iter_async_chunks(data):  # type: ignore[arg-type]
                digest.update(view)
                parts.append(bytes(view))
        else:
            for view in iter_sync_chunks(data):
                digest.update(view)
                parts.append(bytes(view))
        self._check_open("put")
        blob = parts[0] if len(parts) == 1 else b"".join(parts)
        # No await from this check to the assignment: nothing can run in between.
        if key in self._objects:
            if if_absent:
                raise already_exists(key)
        else:
            insort(self._keys, key)
        self._objects[key] = _Object(blob, digest.hexdigest())

    async def get(self, key: str, **opts: Any) -> bytes:
        check_key(key)
        check_no_opts("get", opts)
        self._check_open("get")
        return self._found(key).data

    async def get_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        check_key(key)
        check_chunk_size(chunk_size)
        self._check_open("get_stream")
        data = self._found(key).data
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    async def delete(self, key: str, **opts: Any) -> None:
        check_key(key)
        check_no_opts("delete", opts)
        self._check_open("delete")
        if self._objects.pop(key, None) is not None:
            del self._keys[bisect_left(self._keys, key)]

    async def exists(self, key: str) -> bool:
        check_key(key)
        self._check_open("exists")
        return key in self._objects

    async def stat(self, key: str) -> ArtifactStat:
        check_key(key)
        self._check_open("stat")
        obj = self._found(key)
        return ArtifactStat(key, len(obj.data), obj.sha256, obj.modified_at)

    async def list_keys(
        self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None
    ) -> KeyPage:
        check_prefix(prefix)
        check_limit(limit)
        after = None if cursor is None else decode_cursor(cursor, prefix)
        self._check_open("list_keys")
        keys = self._keys
        i = bisect_left(keys, prefix) if after is None else bisect_right(keys, after)
        page: list[str] = []
        while i < len(keys) and len(page) <= limit:
            if not keys[i].startswith(prefix):
                break  # sorted: the prefix's keys are contiguous
            page.append(keys[i])
            i += 1
        if len(page) > limit:
            return KeyPage(page[:limit], encode_cursor(prefix, page[limit - 1]))
        return KeyPage(page, None)
