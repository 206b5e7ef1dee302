"""Artifacts as files under one root directory (contract 4).

Layout: a key's ``/``-separated components become nested directories, so
``runs/r1/patch.diff`` is ``ROOT/runs%/r1%/patch.diff``. Directory names end in ``%``
because a key may be both an object and a prefix of other keys (``a`` and ``a/b``), while a
filesystem name cannot be both a file and a directory. Inside a component every byte outside
``[A-Za-z0-9._-]`` is written ``%XX`` (so are ``%`` itself and a leading or trailing ``.``);
an empty component is ``%00`` (NUL can never be in a key); a component longer than 240
escaped bytes continues in a directory ending ``%+``. That mapping is injective, and no
name it makes is ``.``, ``..`` or starts with ``.``, which leaves dot-names for the store's
own temp files (``.tmp-*``) and SHA-256 sidecars (``.m.NAME``).

Safety: every path is walked one component at a time from a descriptor of the root with
``O_NOFOLLOW`` and ``dir_fd``, so no key and no planted symlink reaches outside the root, and
paths longer than PATH_MAX still work. A put writes a temp file in the target directory,
fsyncs it, renames it over the old file and fsyncs the directory: readers see the old or
the new object, and a crash leaves the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
import stat as stat_mod
import string
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import unquote, urlsplit

from ..errors import NotFoundError, StorageError, StoreError, ValidationError
from ..lifecycle import OpenClose
from ..ports import ArtifactData, ArtifactStat, KeyPage
from ..urls import bool_option, query_options
from ._common import (
    check_chunk_size,
    check_data_type,
    check_key,
    check_limit,
    check_no_opts,
    check_prefix,
    closed_error,
    decode_cursor,
    encode_cursor,
    from_ns,
    is_async_chunks,
    iter_async_chunks,
    iter_sync_chunks,
)

__all__ = ["FileArtifactStore", "key_to_segments"]

T = TypeVar("T")

_SAFE = frozenset((string.ascii_letters + string.digits + "-_.").encode())
_SEG_MAX = 240  # escaped bytes per name; leaves room for markers, ".m." and NAME_MAX (255)
_EMPTY = "%00"
_DIR = "%"
_CONT = "%+"
_TMP = ".tmp-"
_META = ".m."
_HEX = frozenset(b"0123456789ABCDEF")

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_O_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_BATCH = 256 << 10  # async chunks are handed to the writer thread in batches of this size


# ---------------------------------------------------------------- key <-> names


def _escape_chunks(component: str) -> list[str]:
    """One component as its escaped names, split at escape boundaries into ≤ 240 bytes."""
    if not component:
        return [_EMPTY]
    raw = component.encode("utf-8")
    last = len(raw) - 1
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for i, byte in enumerate(raw):
        if byte in _SAFE and not (byte == 0x2E and (i == 0 or i == last)):
            token = chr(byte)
        else:
            token = f"%{byte:02X}"
        if size + len(token) > _SEG_MAX:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(token)
        size += len(token)
    chunks.append("".join(current))
    return chunks


def key_to_segments(key: str) -> tuple[list[str], str]:
    """(directory names from the root, file name) for a valid key."""
    components = key.split("/")
    dirs: list[str] = []
    for component in components[:-1]:
        chunks = _escape_chunks(component)
        dirs.extend(c + _CONT for c in chunks[:-1])
        dirs.append(chunks[-1] + _DIR)
    chunks = _escape_chunks(components[-1])
    dirs.extend(c + _CONT for c in chunks[:-1])
    return dirs, chunks[-1]


def _unescape(body: str) -> bytes | None:
    """The bytes an escaped name stands for, or None when it is not one of ours."""
    out = bytearray()
    data = body.encode("ascii", "surrogateescape")
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte == 0x25:  # %
            pair = data[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in _HEX for c in pair):
                return None
            out.append(int(pair, 16))
            i += 3
        elif byte in _SAFE:
            out.append(byte)
            i += 1
        else:
            return None
    return bytes(out)


def _component(bodies: list[str]) -> bytes | None:
    """A component's UTF-8 bytes from its escaped chunks, if they are exactly what
    ``_escape_chunks`` makes for it (anything else in the root is not ours)."""
    if bodies == [_EMPTY]:
        return b""
    raw = _unescape("".join(bodies))
    if raw is None or not raw or b"\x00" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return raw if _escape_chunks(text) == bodies else None


# ---------------------------------------------------------------- the store


class FileArtifactStore(OpenClose):
    """Artifacts as files under ``root`` (see the module docstring for the layout)."""

    backend_name = "file"

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True, create: bool = True):
        self.root = Path(root)
        if not self.root.is_absolute():
            raise ValidationError(f"file artifact root must be an absolute path, got {root!s}")
        self.fsync = fsync
        self.create = create
        self._root_fd: int | None = None
        self._closed = False
        self._open_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FileArtifactStore:
        """``file:///abs/root[?fsync=false&create=false]``."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValidationError(
                f"file:// URLs name a local path: use file:///abs/path, not host {parts.netloc!r}"
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValidationError("file:// URL needs an absolute path: file:///abs/root")
        opts = query_options(url)
        options.setdefault("fsync", bool_option(opts, "fsync", True))
        options.setdefault("create", bool_option(opts, "create", True))
        if opts:
            raise ValidationError(f"unknown file:// option(s): {', '.join(sorted(opts))}")
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"FileArtifactStore(root={str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        """Where ``key``'s file lives (for people and tests; I/O goes through ``dir_fd``)."""
        dirs, name = key_to_segments(check_key(key))
        return self.root.joinpath(*dirs, name)

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> Self:
        if self._closed:
            raise closed_error(self.backend_name, "open")
        if self._root_fd is None:
            async with self._open_lock:
                if self._root_fd is None:
                    self._root_fd = await self._io("open", self._open_root)
        return self

    def _open_root(self) -> int:
        if self.create:
            self.root.mkdir(parents=True, exist_ok=True)
        # The root itself may be reached through a symlink the caller chose; only what is
        # below it is walked without following links.
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    async def close(self) -> None:
        self._closed = True
        fd, self._root_fd = self._root_fd, None
        if fd is not None:
            os.close(fd)

    async def _ready(self, operation: str) -> int:
        if self._closed:
            raise closed_error(self.backend_name, operation)
        if self._root_fd is None:
            await self.open()
        fd = self._root_fd
        if fd is None:
            raise closed_error(self.backend_name, operation)
        return fd

    async def _io(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except StoreError:
            raise
        except OSError as exc:
            raise self._wrap(exc, operation) from exc

    async def _io_fd(
        self,
        operation: str,
        fn: Callable[..., T],
        *args: Any,
        undo: Callable[[T], Any] | None = None,
    ) -> T:
        """Like ``_io``, for work on descriptors: a cancelled caller first waits for the
        thread to be done with them (else a descriptor could be closed, reused by another
        open and written through), then ``undo``es a result it will never use."""
        job = asyncio.ensure_future(self._io(operation, fn, *args))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait([job])
            if not job.cancelled() and job.exception() is None and undo is not None:
                undo(job.result())
            raise

    def _wrap(self, exc: OSError, operation: str) -> StoreError:
        reason = exc.strerror or type(exc).__name__
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            reason = "a symlink or a foreign file is in the way; links are never followed"
        return StorageError(
            f"file artifact {operation} failed under {self.root}: {reason}",
            details={"operation": operation, "errno": exc.errno},
        )

    # ------------------------------------------------------------ sync helpers (threads)

    @staticmethod
    def _walk(root_fd: int, dirs: list[str], create: bool) -> int | None:
        """A descriptor of the directory ``dirs`` names, or None when it does not exist."""
        fd = os.open(".", _O_DIR, dir_fd=root_fd)
        try:
            for name in dirs:
                try:
                    nfd = os.open(name, _O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o777, dir_fd=fd)
                    nfd = os.open(name, _O_DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_read(self, root_fd: int, key: str) -> int:
        dirs, name = key_to_segments(key)
        pfd = self._walk(root_fd, dirs, create=False)
        if pfd is None:
            raise NotFoundError(f"no artifact with key {key!r}", details={"key": key})
        try:
            fd = os.open(name, _O_READ, dir_fd=pfd)
        except FileNotFoundError:
            raise NotFoundError(f"no artifact with key {key!r}", details={"key": key}) from None
        finally:
            os.close(pfd)
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StorageError(
                f"artifact {key!r} is not a regular file on disk", details={"key": key}
            )
        return fd

    def _read_all(self, root_fd: int, key: str) -> bytes:
        fd = self._open_read(root_fd, key)
        with open(fd, "rb", buffering=0, closefd=True) as f:
            return f.read()

    def _stat(self, root_fd: int, key: str) -> ArtifactStat:
        dirs, name = key_to_segments(key)
        fd = self._open_read(root_fd, key)
        try:
            st = os.fstat(fd)
            sha = self._read_sidecar(root_fd, dirs, name, st)
            if sha is None:
                digest = hashlib.sha256()
                while block := os.read(fd, 1 << 20):
                    digest.update(block)
                sha = digest.hexdigest()
                with contextlib.suppress(OSError):
                    pfd = self._walk(root_fd, dirs, create=False)
                    if pfd is not None:
                        try:
                            _write_sidecar(pfd, name, st, sha)
                        finally:
                            os.close(pfd)
        finally:
            os.close(fd)
        return ArtifactStat(key, st.st_size, sha, from_ns(st.st_mtime_ns))

    def _read_sidecar(
        self, root_fd: int, dirs: list[str], name: str, st: os.stat_result
    ) -> str | None:
        """The cached SHA-256, if the sidecar was written for exactly this file version."""
        try:
            pfd = self._walk(root_fd, dirs, create=False)
            if pfd is None:
                return None
            try:
                mfd = os.open(_META + name, _O_READ, dir_fd=pfd)
            finally:
                os.close(pfd)
            with open(mfd, "rb", buffering=0) as f:
                fields = f.read(256).decode("ascii").split()
        except (OSError, UnicodeDecodeError):
            return None
        if len(fields) == 5 and fields[:4] == _version(st):
            return fields[4]
        return None

    def _delete(self, root_fd: int, key: str) -> None:
        dirs, name = key_to_segments(key)
        pfd = self._walk(root_fd, dirs, create=False)
        if pfd is None:
            return
        try:
            try:
                os.unlink(name, dir_fd=pfd)
            except FileNotFoundError:
                return
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_META + name, dir_fd=pfd)
            if self.fsync:
                os.fsync(pfd)
            # Drop the directories the delete left empty, climbing with ".." (one descriptor
            # at a time); a put racing into one of them retries.
            for d in reversed(dirs):
                up = os.open("..", _O_DIR, dir_fd=pfd)
                os.close(pfd)
                pfd = up
                try:
                    os.rmdir(d, dir_fd=pfd)
                except OSError:
                    break
        finally:
            os.close(pfd)

    # ------------------------------------------------------------ operations

    async def put(self, key: str, data: ArtifactData, **opts: Any) -> None:
        check_key(key)
        check_no_opts("put", opts)
        check_data_type(data)
        root_fd = await self._ready("put")
        if not is_async_chunks(data):
            # One thread hop for the whole put: open, write, fsync, rename.
            await self._io_fd("put", _put_sync, self, root_fd, key, iter_sync_chunks(data))
            return
        writer = await self._io_fd("put", _Writer, self, root_fd, key, undo=_Writer.abort)
        try:
            batch: list[memoryview] = []
            size = 0
            async for view in iter_async_chunks(data):  # type: ignore[arg-type]
                batch.append(view)
                size += view.nbytes
                if size >= _BATCH:
                    await self._io_fd("put", writer.write_all, batch)
                    batch, size = [], 0
            if batch:
                await self._io_fd("put", writer.write_all, batch)
            await self._io_fd("put", writer.commit)
        except BaseException:
            writer.abort()  # no thread is using its descriptors any more
            raise

    async def get(self, key: str, **opts: Any) -> bytes:
        check_key(key)
        check_no_opts("get", opts)
        root_fd = await self._ready("get")
        return await self._io("get", self._read_all, root_fd, key)

    async def get_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        check_key(key)
        check_chunk_size(chunk_size)
        root_fd = await self._ready("get_stream")
        fd = await self._io_fd("get_stream", self._open_read, root_fd, key, undo=os.close)
        try:
            while True:
                block = await self._io_fd("get_stream", os.read, fd, chunk_size)
                if not block:
                    return
                yield block
        finally:
            os.close(fd)

    async def delete(self, key: str, **opts: Any) -> None:
        check_key(key)
        check_no_opts("delete", opts)
        root_fd = await self._ready("delete")
        await self._io("delete", self._delete, root_fd, key)

    async def exists(self, key: str) -> bool:
        check_key(key)
        root_fd = await self._ready("exists")
        return await self._io("exists", self._exists, root_fd, key)

    def _exists(self, root_fd: int, key: str) -> bool:
        try:
            os.close(self._open_read(root_fd, key))
        except NotFoundError:
            return False
        return True

    async def stat(self, key: str) -> ArtifactStat:
        check_key(key)
        root_fd = await self._ready("stat")
        return await self._io("stat", self._stat, root_fd, key)

    async def list_keys(
        self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None
    ) -> KeyPage:
        check_prefix(prefix)
        check_limit(limit)
        after = None if cursor is None else decode_cursor(cursor, prefix)
        root_fd = await self._ready("list_keys")
        keys = await self._io("list_keys", self._list, root_fd, prefix, after, limit + 1)
        if len(keys) > limit:
            return KeyPage(keys[:limit], encode_cursor(prefix, keys[limit - 1]))
        return KeyPage(keys, None)

    def _list(self, root_fd: int, prefix: str, after: str | None, count: int) -> list[str]:
        pre = prefix.encode()
        aft = None if after is None else after.encode()
        out: list[str] = []
        fd = os.open(".", _O_DIR, dir_fd=root_fd)
        try:
            with contextlib.closing(_ordered(fd, b"", pre, aft)) as keys:
                for key in keys:
                    out.append(key.decode())
                    if len(out) >= count:
                        break
        finally:
            os.close(fd)
        return out


def _version(st: os.stat_result) -> list[str]:
    return [str(st.st_dev), str(st.st_ino), str(st.st_size), str(st.st_mtime_ns)]


def _write_sidecar(pfd: int, name: str, st: os.stat_result, sha: str) -> None:
    """Cache a file's SHA-256 next to it, tagged with the exact file version it is for; a
    stale or missing sidecar only costs a recomputation, so it is not fsynced."""
    tmp = _TMP + secrets.token_hex(8)
    fd = os.open(tmp, _O_TEMP, 0o666, dir_fd=pfd)
    try:
        os.write(fd, (" ".join([*_version(st), sha]) + "\n").encode())
    finally:
        os.close(fd)
    os.rename(tmp, _META + name, src_dir_fd=pfd, dst_dir_fd=pfd)


def _entries(fd: int) -> list[tuple[str, int]]:
    """(name, kind) of the directory's entries that may be ours: 0 file, 1 dir, 2 cont."""
    found: list[tuple[str, int]] = []
    with os.scandir(fd) as it:
        for entry in it:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if name.endswith(_CONT):
                    found.append((name[:-2], 2))
                elif name.endswith(_DIR):
                    found.append((name[:-1], 1))
            elif entry.is_file(follow_symlinks=False):
                found.append((name, 0))
    return found


def _items(fd: int, base: bytes) -> list[tuple[bytes, str | None]]:
    """A directory's entries as (key, None) for objects and (key prefix ``…/``, name) for
    subdirectories, sorted by that text. Long components (``%+`` chains) are expanded into
    their keys at once: their text is not a prefix that sorts as one block. They are rare."""
    items: list[tuple[bytes, str | None]] = []
    for body, kind in _entries(fd):
        if kind == 2:
            items.extend((k, None) for k in _expand(fd, body + _CONT, base, [body]))
            continue
        comp = _component([body])
        if comp is None:
            continue
        if kind == 0:
            items.append((base + comp, None))
        else:
            items.append((base + comp + b"/", body + _DIR))
    items.sort()
    return items


def _ordered(
    fd: int, base: bytes, prefix: bytes, after: bytes | None
) -> Generator[bytes, None, None]:
    """Keys under ``fd`` (whose keys start with ``base``) in UTF-8 byte order, which is code
    point order, skipping subtrees that cannot hold a key past ``after`` with ``prefix``.

    Iterative, and holding one descriptor of its own at a time (it climbs back with ``..``),
    so a key of 1024 slashes neither recurses 1024 deep nor opens 1024 descriptors."""
    cur = os.open(".", _O_DIR, dir_fd=fd)
    levels: list[tuple[list[tuple[bytes, str | None]], int]] = [(_items(cur, base), 0)]
    try:
        while levels:
            items, i = levels[-1]
            if i == len(items):
                levels.pop()
                if levels:
                    up = os.open("..", _O_DIR, dir_fd=cur)
                    os.close(cur)
                    cur = up
                continue
            levels[-1] = (items, i + 1)
            text, dirname = items[i]
            if dirname is None:
                if text.startswith(prefix) and (after is None or text > after):
                    yield text
                continue
            if not (text.startswith(prefix) or prefix.startswith(text)):
                continue
            if after is not None and text < after and not after.startswith(text):
                continue
            try:
                sub = os.open(dirname, _O_DIR, dir_fd=cur)
            except OSError:
                continue  # removed meanwhile
            os.close(cur)
            cur = sub
            levels.append((_items(cur, text), 0))
    finally:
        os.close(cur)


def _expand(fd: int, name: str, base: bytes, bodies: list[str]) -> list[bytes]:
    """Every key below a continuation directory (a component longer than one name)."""
    try:
        sub = os.open(name, _O_DIR, dir_fd=fd)
    except OSError:
        return []
    keys: list[bytes] = []
    try:
        for body, kind in _entries(sub):
            if kind == 2:
                keys.extend(_expand(sub, body + _CONT, base, [*bodies, body]))
                continue
            comp = _component([*bodies, body])
            if comp is None:
                continue
            if kind == 0:
                keys.append(base + comp)
            else:
                try:
                    dfd = os.open(body + _DIR, _O_DIR, dir_fd=sub)
                except OSError:
                    continue
                try:
                    keys.extend(_ordered(dfd, base + comp + b"/", b"", None))
                finally:
                    os.close(dfd)
    finally:
        os.close(sub)
    return keys


def _put_sync(
    store: FileArtifactStore, root_fd: int, key: str, views: Iterator[memoryview]
) -> None:
    writer = _Writer(store, root_fd, key)
    try:
        for view in views:
            writer.write(view)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


class _Writer:
    """One put: a temp file beside the target, fsynced and renamed over it on commit.

    The SHA-256 is not computed here: hashing costs about as much as writing, so ``stat``
    computes it on first use and caches it in a sidecar tagged with the file version."""

    def __init__(self, store: FileArtifactStore, root_fd: int, key: str) -> None:
        self.store = store
        self.dirs, self.name = key_to_segments(key)
        self.pfd = -1
        self.fd = -1
        self.tmp = _TMP + secrets.token_hex(8)
        # A concurrent delete may remove an empty directory between our walk and the temp
        # file's creation; once the temp file exists the directory cannot be removed.
        for attempt in range(20):
            pfd = FileArtifactStore._walk(root_fd, self.dirs, create=True)
            assert pfd is not None
            try:
                self.fd = os.open(self.tmp, _O_TEMP, 0o666, dir_fd=pfd)
            except FileNotFoundError:
                os.close(pfd)
                if attempt == 19:
                    raise
                continue
            except BaseException:
                os.close(pfd)
                raise
            self.pfd = pfd
            break

    def write(self, view: memoryview) -> None:
        while view:
            done = os.write(self.fd, view)
            view = view[done:]

    def write_all(self, views: list[memoryview]) -> None:
        for view in views:
            self.write(view)

    def commit(self) -> None:
        if self.store.fsync:
            os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.rename(self.tmp, self.name, src_dir_fd=self.pfd, dst_dir_fd=self.pfd)
        self.tmp = ""
        if self.store.fsync:
            os.fsync(self.pfd)
        os.close(self.pfd)
        self.pfd = -1

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pfd >= 0:
            if self.tmp:
                with contextlib.suppress(OSError):
                    os.unlink(self.tmp, dir_fd=self.pfd)
            os.close(self.pfd)
            self.pfd = -1
