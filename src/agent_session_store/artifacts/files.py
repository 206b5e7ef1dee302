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
the new object, and a crash leaves the old one. A create-only put (``if_absent=True``)
links the finished temp file to the target name instead: ``link()`` fails when the name
exists, so of racing writers exactly one creates it and nothing is ever overwritten.
Directories a put creates are fsynced into their parents.

A put races a delete that removes the directories it left empty: a directory can vanish
between the put's walk and its temp file, so the put walks again (bounded by a deadline);
once the temp file exists its directory is not empty and cannot be removed. Temp files of
writers that died hold a flock no longer; those older than ``temp_grace`` seconds are
removed in the background on open and when a delete empties their directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import stat as stat_mod
import string
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import unquote, urlsplit

from ..errors import NotFoundError, StorageError, StoreError, ValidationError
from ..lifecycle import OpenClose
from ..ports import ArtifactData, ArtifactStat, KeyPage
from ..retry import Retry, RetryPolicy
from ..urls import bool_option, number_options, query_options
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
# A put keeps re-walking directories a delete removes for 30 s at most.
_WALK_RETRY = RetryPolicy(timeout=30.0, first_delay=0.0001, max_delay=0.01)


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

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        create: bool = True,
        temp_grace: float = 3600.0,
    ):
        self.root = Path(root)
        if not self.root.is_absolute():
            raise ValidationError(f"file artifact root must be an absolute path, got {root!s}")
        if type(temp_grace) not in (int, float) or not temp_grace >= 0:
            raise ValidationError(f"temp_grace must be a number >= 0, got {temp_grace!r}")
        self.fsync = fsync
        self.create = create
        self.temp_grace = float(temp_grace)
        #: The sweep of stale temp files that ``open`` starts in the background (its result
        #: is the number removed); await it to know it is done.
        self.open_cleanup: asyncio.Task[int] | None = None
        self._root_fd: int | None = None
        self._closed = False
        self._open_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FileArtifactStore:
        """``file:///abs/root[?fsync=false&create=false&temp_grace=3600]``."""
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
        number_options(opts, options, {"temp_grace": float})
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
                    self.open_cleanup = asyncio.create_task(
                        self.cleanup(older_than=self.temp_grace)
                    )
        return self

    def _open_root(self) -> int:
        if self.create and not self.root.is_dir():
            missing = [p for p in (self.root, *self.root.parents) if not p.exists()]
            self.root.mkdir(parents=True, exist_ok=True)
            if self.fsync:
                for made in missing:  # make each new directory's entry durable
                    fd = os.open(made.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
        # The root itself may be reached through a symlink the caller chose; only what is
        # below it is walked without following links.
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    async def close(self) -> None:
        self._closed = True
        sweep, self.open_cleanup = self.open_cleanup, None
        if sweep is not None:
            # The sweep checks _closed between directories; its descriptor must be released
            # before the root's is closed (a reused number could be written through).
            await asyncio.wait([sweep])
            if not sweep.cancelled():
                sweep.exception()  # a failed background sweep is not the closer's error
        fd, self._root_fd = self._root_fd, None
        if fd is not None:
            os.close(fd)

    async def cleanup(self, *, older_than: float | None = None) -> int:
        """Remove temp files of dead writers older than ``older_than`` seconds (default
        ``temp_grace``); return how many. A live writer's temp file is never removed:
        writers hold a flock on it, which dies with their process."""
        grace = self.temp_grace if older_than is None else older_than
        if type(grace) not in (int, float) or not grace >= 0:
            raise ValidationError(f"older_than must be a number >= 0, got {grace!r}")
        root_fd = await self._ready("cleanup")
        return await self._io_fd("cleanup", _sweep_tree, root_fd, float(grace), self)

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
    def _walk(root_fd: int, dirs: list[str], create: bool, fsync: bool = False) -> int | None:
        """A descriptor of the directory ``dirs`` names, or None when it does not exist.

        With ``create`` it makes the missing ones (fsyncing each into its parent when
        ``fsync``); FileNotFoundError then means a concurrent delete removed one of them
        mid-walk, and the caller walks again."""
        fd = os.open(".", _O_DIR, dir_fd=root_fd)
        try:
            for name in dirs:
                try:
                    nfd = os.open(name, _O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                    else:
                        if fsync:
                            os.fsync(fd)
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
            # at a time); a put racing into one of them walks again. Stale temp files and
            # orphaned sidecars alone do not keep a directory alive.
            for d in reversed(dirs):
                if not _clear_leftovers(pfd, self.temp_grace):
                    break
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

    async def put(
        self, key: str, data: ArtifactData, *, if_absent: bool = False, **opts: Any
    ) -> None:
        check_key(key)
        check_if_absent(if_absent)
        check_no_opts("put", opts)
        check_data_type(data)
        root_fd = await self._ready("put")
        if not is_async_chunks(data):
            # One thread hop for the whole put: open, write, fsync, rename.
            await self._io_fd(
                "put", _put_sync, self, root_fd, key, iter_sync_chunks(data), if_absent
            )
            return
        writer = await self._io_fd(
            "put", _Writer, self, root_fd, key, if_absent, undo=_Writer.abort
        )
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
    store: FileArtifactStore,
    root_fd: int,
    key: str,
    views: Iterator[memoryview],
    if_absent: bool,
) -> None:
    writer = _Writer(store, root_fd, key, if_absent)
    try:
        for view in views:
            writer.write(view)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


class _Writer:
    """One put: a temp file beside the target, fsynced and renamed over it on commit (or,
    create-only, linked to the target name, which fails if the name exists).

    The SHA-256 is not computed here: hashing costs about as much as writing, so ``stat``
    computes it on first use and caches it in a sidecar tagged with the file version."""

    def __init__(
        self, store: FileArtifactStore, root_fd: int, key: str, if_absent: bool = False
    ) -> None:
        self.store = store
        self.key = key
        self.if_absent = if_absent
        self.dirs, self.name = key_to_segments(key)
        self.tmp = _TMP + secrets.token_hex(8)
        self.pfd, self.fd = _create_temp(root_fd, self.dirs, self.tmp, store.fsync)
        if if_absent:
            try:
                os.stat(self.name, dir_fd=self.pfd, follow_symlinks=False)
            except FileNotFoundError:
                pass  # early check only: the link at commit is what decides
            else:
                self.abort()
                raise already_exists(key)

    def write(self, view: memoryview) -> None:
        while view:
            done = os.write(self.fd, view)
            view = view[done:]

    def write_all(self, views: list[memoryview]) -> None:
        for view in views:
            self.write(view)

    def commit(self) -> None:
        # The temp file stays open (and flocked, so no sweeper takes it) until it has its
        # final name.
        if self.store.fsync:
            os.fsync(self.fd)
        if self.if_absent:
            try:
                os.link(
                    self.tmp,
                    self.name,
                    src_dir_fd=self.pfd,
                    dst_dir_fd=self.pfd,
                    follow_symlinks=False,
                )
            except FileExistsError:
                self.abort()
                raise already_exists(self.key) from None
            # The object exists now; a temp name left behind is only a second link to it,
            # which a sweep removes without touching the object.
            with contextlib.suppress(OSError):
                os.unlink(self.tmp, dir_fd=self.pfd)
        else:
            os.rename(self.tmp, self.name, src_dir_fd=self.pfd, dst_dir_fd=self.pfd)
        self.tmp = ""
        os.close(self.fd)
        self.fd = -1
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


def _create_temp(root_fd: int, dirs: list[str], tmp: str, fsync: bool) -> tuple[int, int]:
    """(directory descriptor, temp file descriptor), the temp file created and flocked.

    A concurrent delete may remove a directory mid-walk or between the walk and the temp
    file's creation (both ENOENT): walk again until the temp file exists, bounded by a
    deadline. Once it exists its directory is not empty, so no delete can remove it."""
    retry = Retry(_WALK_RETRY)
    while True:
        pfd = -1
        try:
            walked = FileArtifactStore._walk(root_fd, dirs, create=True, fsync=fsync)
            assert walked is not None
            pfd = walked
            fd = os.open(tmp, _O_TEMP, 0o666, dir_fd=pfd)
        except FileNotFoundError:
            if pfd >= 0:
                os.close(pfd)
            if not retry.pause_sync():
                raise
            continue
        except BaseException:
            if pfd >= 0:
                os.close(pfd)
            raise
        # Held until the put ends: the sweeper removes only temp files nobody holds. A
        # sweeper (with a grace period near zero) may have taken the new file first and
        # unlinked it: then make another.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                return pfd, fd
        except BaseException:
            os.close(fd)
            os.close(pfd)
            raise
        os.close(fd)
        os.close(pfd)
        if not retry.pause_sync():
            raise FileNotFoundError(errno.ENOENT, "temp file removed as soon as made")


def _remove_if_stale(dfd: int, name: str, cutoff_ns: int) -> bool:
    """Unlink temp file ``name`` if it is older than the cutoff and no live writer holds
    its flock. Temp names are random and never reused, so the name still means the file
    just checked."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat_mod.S_ISREG(st.st_mode) or st.st_mtime_ns > cutoff_ns:
            return False
        fd = os.open(name, _O_READ, dir_fd=dfd)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it
        os.unlink(name, dir_fd=dfd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _clear_leftovers(dfd: int, grace: float) -> bool:
    """Whether the directory holds nothing but store leftovers, after removing its stale
    temp files and orphaned sidecars (so that it can be removed). Stops reading at the
    first entry that keeps the directory alive."""
    cutoff = time.time_ns() - int(grace * 1e9)
    leftovers: list[str] = []
    with os.scandir(dfd) as it:
        for entry in it:
            if entry.name.startswith(_TMP):
                leftovers.append(entry.name)
            elif not entry.name.startswith(_META):
                return False  # an object or a subdirectory (or not ours): keep it
            # with no object left here, every sidecar is an orphan
    alive = False
    for name in leftovers:
        if not _remove_if_stale(dfd, name, cutoff):
            alive = True
    if alive:
        return False
    with os.scandir(dfd) as it:
        sidecars = [e.name for e in it if e.name.startswith(_META)]
    for name in sidecars:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dfd)
    return True


def _sweep_tree(root_fd: int, grace: float, store: FileArtifactStore) -> int:
    """Remove stale temp files everywhere under the root; return how many.

    Iterative, holding one descriptor of its own at a time (it climbs back with ``..``), so
    deep trees cost neither recursion nor descriptors; stops early when the store closes."""
    cutoff = time.time_ns() - int(grace * 1e9)
    removed = 0
    cur = os.open(".", _O_DIR, dir_fd=root_fd)
    try:
        levels: list[tuple[list[str], int]] = []
        while True:
            subdirs: list[str] = []
            with os.scandir(cur) as it:
                for entry in it:
                    if entry.name.startswith(_TMP):
                        removed += _remove_if_stale(cur, entry.name, cutoff)
                    elif not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry.name)
            levels.append((subdirs, 0))
            while levels:
                if store._closed:
                    return removed
                names, i = levels[-1]
                if i < len(names):
                    levels[-1] = (names, i + 1)
                    try:
                        sub = os.open(names[i], _O_DIR, dir_fd=cur)
                    except OSError:
                        continue  # removed meanwhile
                    os.close(cur)
                    cur = sub
                    break
                levels.pop()
                if levels:
                    up = os.open("..", _O_DIR, dir_fd=cur)
                    os.close(cur)
                    cur = up
            else:
                return removed
    finally:
        os.close(cur)
