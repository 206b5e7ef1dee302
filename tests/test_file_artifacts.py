"""What only the file backend must show: hostile keys stay inside the root, never collide,
symlinks are not followed, the layout stays readable, a killed put leaves the old object."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_session_store.artifacts.files import FileArtifactStore
from agent_session_store.errors import StoreError
from agent_session_store.testing.workers import run_processes
from agent_session_store.urls import open_artifact_store

HOSTILE_KEYS = [
    "..",
    "../..",
    "../../etc/passwd",
    "/etc/passwd",
    "//etc/passwd",
    "/",
    "//",
    "a/../../../../x",
    "..\\..\\windows\\system32",
    "\\\\server\\share",
    "C:\\boot.ini",
    "%2e%2e",
    "%2e%2e/%2e%2e/etc/passwd",
    "%2F",
    "%252e%252e",
    "a/%2e%2e/b",
    ".",
    "./.",
    "./x",
    "x/.",
    "x/..",
    "...",
    "....",
    ".hidden",
    "..hidden",
    "trailing.",
    "trailing ",
    "trailing. .",
    " leading",
    "CON",
    "con",
    "Con",
    "NUL.txt",
    "ABC",
    "abc",
    "Abc",
    "ｅｔｃ/ｐａｓｓｗｄ",
    "\u2024\u2024/x",  # one dot leaders
    "\u2025/x",  # two dot leader
    "\uff0e\uff0e/x",  # fullwidth full stops
    "\u2215etc\u2215passwd",  # division slashes
    "a\u2044b",  # fraction slash
    "a\u200bb",  # zero width space
    "e\u0301",  # NFD é
    "\u00e9",  # NFC é
    "x" * 255,
    "x" * 256,
    "y" * 1000,
    "z/" * 512,
    "/" * 1024,
    "\U0001f916" * 256,
    "a:b*c?d<e>f|g",
    "tab\tcr\rnl\nbell\x07del\x7f",
    "$HOME/~/`id`",
    "-rf",
    ".tmp-0123456789abcdef",
    ".m.plain",
    "plain%",
    "x%+",
    "%00",
    "%",
    "%%",
    "dir%/x",
    "a%2Fb",
    "a/b",
    "plain",
    "link",
    "linkdir/x",
]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def deep_root(tmp_path: Path) -> Iterator[Path]:
    """The root for keys like "/" * 1024, whose 1024 nested directories pytest's own
    recursive temp-dir cleanup cannot remove: whatever a failing test leaves, rm -rf does."""
    root = tmp_path / "root"
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=True)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the root, with a file: nothing may ever change in it."""
    out = tmp_path / "outside"
    (out / "etc").mkdir(parents=True)
    (out / "etc" / "passwd").write_bytes(b"root:x:0:0\n")
    return out


async def test_hostile_keys_stay_inside_and_never_collide(
    tmp_path: Path, deep_root: Path, outside: Path
) -> None:
    assert len(HOSTILE_KEYS) >= 50 and len(set(HOSTILE_KEYS)) == len(HOSTILE_KEYS)
    root = deep_root
    before_outside = snapshot(outside)
    async with FileArtifactStore(root) as store:
        paths = [store.path_for(k) for k in HOSTILE_KEYS]
        assert len(set(paths)) == len(paths)  # injective
        for key, path in zip(HOSTILE_KEYS, paths, strict=True):
            assert path.is_relative_to(root) and path != root, key
            rel = path.relative_to(root)
            assert all(part not in (".", "..") for part in rel.parts), key
            assert all(0 < len(part.encode()) <= 255 for part in rel.parts), key
        for i, key in enumerate(HOSTILE_KEYS):
            await store.put(key, f"{i}:{key}".encode())
        for i, key in enumerate(HOSTILE_KEYS):
            assert await store.get(key) == f"{i}:{key}".encode(), key
            assert (await store.stat(key)).sha256 == hashlib.sha256(
                f"{i}:{key}".encode()
            ).hexdigest()
        listed: list[str] = []
        cursor = None
        while True:
            page = await store.list_keys(limit=9, cursor=cursor)
            listed += page.keys
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert listed == sorted(HOSTILE_KEYS)
        # Everything written is a real file or directory under the root (walked by
        # descriptor: the deepest paths are longer than PATH_MAX), and no link was made.
        kinds = _walk_kinds(root)
        assert kinds and kinds <= {"file", "dir"}
        assert _names(tmp_path) == {"root", "outside"}
        for key in HOSTILE_KEYS:
            await store.delete(key)
        assert (await store.list_keys()).keys == []
    assert snapshot(outside) == before_outside
    assert list(root.iterdir()) == []  # deletes leave no empty directories behind


def _walk_kinds(root: Path) -> set[str]:
    kinds: set[str] = set()
    stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    while stack:
        fd = stack.pop()
        try:
            for entry in os.scandir(fd):
                st = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    kinds.add("dir")
                    stack.append(
                        os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    )
                else:
                    kinds.add("file" if stat.S_ISREG(st.st_mode) else "other")
        finally:
            os.close(fd)
    return kinds


async def test_layout_is_readable(tmp_path: Path) -> None:
    async with FileArtifactStore(tmp_path) as store:
        await store.put("runs/r1/patch.diff", b"--- a\n+++ b\n")
        await store.put("runs/r1", b"an object that is also a prefix")
        await store.put("notes/ünï code.md", b"x")
        assert (tmp_path / "runs%" / "r1%" / "patch.diff").read_bytes() == b"--- a\n+++ b\n"
        assert (tmp_path / "runs%" / "r1").read_bytes() == b"an object that is also a prefix"
        assert (
            store.path_for("notes/ünï code.md") == tmp_path / "notes%" / "%C3%BCn%C3%AF%20code.md"
        )
        assert store.path_for(".env") == tmp_path / "%2Eenv"
        assert store.path_for("a/") == tmp_path / "a%" / "%00"


async def test_planted_symlinks_are_not_followed(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    before = snapshot(outside)
    async with FileArtifactStore(root) as store:
        await store.put("seed", b"s")
        os.symlink(outside / "etc" / "passwd", store.path_for("link"))
        os.symlink(outside / "etc", root / "linkdir%")
        calls: list[Coroutine[Any, Any, Any]] = [
            store.get("link"),
            store.stat("link"),
            store.exists("link"),
        ]
        for call in calls:
            with pytest.raises(StoreError) as info:
                await call
            assert info.value.code == "storage_error" and "symlink" in info.value.message
        calls = [store.put("linkdir/x", b"evil"), store.get("linkdir/passwd")]
        for call in calls:
            with pytest.raises(StoreError) as info:
                await call
            assert info.value.code == "storage_error"
        with pytest.raises(StoreError) as info:
            await _drain(store.get_stream("linkdir/passwd"))
        assert info.value.code == "storage_error"
        assert (await store.list_keys()).keys == ["seed"]  # links are not ours
        await store.put("link", b"replaces the link itself")
        assert not store.path_for("link").is_symlink()
        assert await store.get("link") == b"replaces the link itself"
    assert snapshot(outside) == before


async def _drain(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([block async for block in stream])


def _names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


async def test_foreign_and_leftover_files_are_ignored(tmp_path: Path) -> None:
    async with FileArtifactStore(tmp_path) as store:
        await store.put("d/k", b"v")
        (tmp_path / "not ours.txt").write_bytes(b"x")  # space: not a name we make
        (tmp_path / "d%" / ".tmp-deadbeef").write_bytes(b"crash leftover")
        (tmp_path / "%zz").write_bytes(b"bad escape")
        (tmp_path / "%41").write_bytes(b"non-canonical escape of A")
        assert (await store.list_keys()).keys == ["d/k"]


async def test_stale_sidecar_is_recomputed(tmp_path: Path) -> None:
    async with FileArtifactStore(tmp_path) as store:
        await store.put("k", b"original")
        path = store.path_for("k")
        path.write_bytes(b"changed behind the store's back")
        st = await store.stat("k")
        assert st.sha256 == hashlib.sha256(b"changed behind the store's back").hexdigest()
        assert st.size == len(b"changed behind the store's back")


_KILLED_WRITER = """
import asyncio, sys
from agent_session_store.artifacts.files import FileArtifactStore

async def main():
    async with FileArtifactStore(sys.argv[1]) as store:
        def endless():
            while True:
                yield b"new" * 100_000
        await store.put(sys.argv[2], endless())

asyncio.run(main())
"""


def _kill_mid_put(root: Path, key: str = "victim") -> Path:
    """SIGKILL a writer process once its temp file holds more than 1 MB; the temp file."""
    folder = FileArtifactStore(root).path_for(key).parent
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(root), key])
    try:
        deadline = time.monotonic() + 60
        # Readiness poll of the directory (not a timing assumption): wait for the temp file.
        while True:
            temps = [p for p in _temp_files(folder) if p.stat().st_size > 1_000_000]
            if temps:
                break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return temps[0]


def _temp_files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    except FileNotFoundError:
        return []


def _age(path: Path, seconds: float) -> None:
    """Make a file look ``seconds`` old (what waiting out the grace period would do)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_killed_put_leaves_old_object(tmp_path: Path) -> None:
    async with FileArtifactStore(tmp_path) as store:
        await store.put("victim", b"old")
        _kill_mid_put(tmp_path)
        assert await store.get("victim") == b"old"
        assert (await store.stat("victim")).sha256 == hashlib.sha256(b"old").hexdigest()
        assert (await store.list_keys()).keys == ["victim"]


async def test_root_must_be_absolute() -> None:
    with pytest.raises(StoreError) as info:
        FileArtifactStore("relative/root")
    assert info.value.code == "validation_error"


async def test_killed_writers_temp_file_is_swept_on_open_after_the_grace_period(
    tmp_path: Path,
) -> None:
    temp = _kill_mid_put(tmp_path, "runs/r1/victim")
    async with FileArtifactStore(tmp_path) as store:  # default grace: one hour
        assert store.open_cleanup is not None
        assert await store.open_cleanup == 0
    assert temp.exists()  # young: it could be a live writer's on a slow producer
    _age(temp, 7200)
    async with FileArtifactStore(tmp_path) as store:
        assert store.open_cleanup is not None
        assert await store.open_cleanup == 1
        assert not temp.exists()
        assert (await store.list_keys()).keys == []


async def test_live_writers_temp_file_is_never_swept(tmp_path: Path) -> None:
    async with FileArtifactStore(tmp_path, temp_grace=0) as store:
        halfway = asyncio.Event()
        resume = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"part one;"
            halfway.set()
            await resume.wait()
            yield b"part two"

        writer = asyncio.create_task(store.put("d/slow", slow()))
        await halfway.wait()
        (temp,) = _temp_files(tmp_path / "d%")
        _age(temp, 7200)
        assert await store.cleanup(older_than=0) == 0  # its writer holds the flock
        await store.put("d/other", b"x")
        await store.delete("d/other")  # empties the folder but for the live temp file
        assert temp.exists()
        resume.set()
        await writer
        assert await store.get("d/slow") == b"part one;part two"
        assert _temp_files(tmp_path / "d%") == []


async def test_delete_sweeps_stale_temp_files_of_its_folder(tmp_path: Path) -> None:
    async with FileArtifactStore(tmp_path) as store:
        await store.put("runs/r1/keep", b"k")
        await store.stat("runs/r1/keep")  # leaves a sidecar too
        temp = _kill_mid_put(tmp_path, "runs/r1/victim")
        await store.delete("runs/r1/keep")
        assert temp.exists()  # within the grace period: the folder stays
        assert (tmp_path / "runs%" / "r1%").is_dir()
        await store.put("runs/r1/keep", b"k")
        _age(temp, 7200)
        await store.delete("runs/r1/keep")
        assert _names(tmp_path) == set()  # temp and folders gone


async def test_new_folders_are_fsynced_into_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: set[tuple[int, int]] = set()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        real_fsync(fd)

    def inode(path: Path) -> tuple[int, int]:
        st = path.stat()
        return (st.st_dev, st.st_ino)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    root = tmp_path / "new" / "root"
    async with FileArtifactStore(root) as store:
        assert {inode(tmp_path), inode(tmp_path / "new")} <= synced
        await store.put("a/b/c/k", b"v")
    folders = [root, root / "a%", root / "a%" / "b%", root / "a%" / "b%" / "c%"]
    missing = [str(f) for f in folders if inode(f) not in synced]
    assert missing == []


async def _put_many(barrier: Any, url: str, key: str, count: int) -> list[str]:
    failures: list[str] = []
    async with open_artifact_store(url) as store:
        barrier.wait(timeout=60)
        for i in range(count):
            try:
                await store.put(key, b"v%d" % i)
            except StoreError as err:
                failures.append(str(err))
    return failures


async def _delete_many(barrier: Any, url: str, key: str, count: int) -> list[str]:
    async with open_artifact_store(url) as store:
        barrier.wait(timeout=60)
        for _ in range(count):
            await store.delete(key)
    return []


def test_put_survives_a_concurrent_delete_removing_its_folders(tmp_path: Path) -> None:
    """One process puts a deep key while another deletes it (removing the emptied folders)."""
    url = f"file://{tmp_path}/root?fsync=false"
    key = "d1/d2/d3/d4/k"
    results = run_processes(
        _race_target, [("put", url, key, 3000), ("delete", url, key, 3000)], timeout=300
    )
    assert results[0] == [], f"{len(results[0])} puts failed, first: {results[0][:1]}"


async def _race_target(barrier: Any, role: str, url: str, key: str, count: int) -> list[str]:
    if role == "put":
        return await _put_many(barrier, url, key, count)
    return await _delete_many(barrier, url, key, count)
