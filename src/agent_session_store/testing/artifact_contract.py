"""The ArtifactStore contract suite (contract 4), written once for every backend.

Subclass ``ArtifactStoreContract`` in a ``Test*`` class and provide an ``artifact_url``
fixture naming a fresh, empty location for each test (or override ``artifact_store`` to build
the store yourself, e.g. a composite)::

    class TestMyArtifacts(ArtifactStoreContract):
        @pytest.fixture
        def artifact_url(self, tmp_path):
            return f"file://{tmp_path}/artifacts"

Set ``durable = False`` for a backend whose second store object on the same URL starts empty
(``memory://``). Requires pytest and pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from typing import Any, ClassVar

import pytest

from ..errors import StoreError
from ..ports import ArtifactStore
from ..urls import open_artifact_store
from .workers import run_processes

__all__ = ["FAITHFUL_KEYS", "ArtifactStoreContract", "put_if_absent_racer"]

#: Keys that are valid and must come back exactly as given (contract 4).
FAITHFUL_KEYS = [
    "plain",
    "runs/r1/patch.diff",
    "a/b/../c",
    "a/./b",
    "a//b",
    "/leading",
    "trailing/",
    "..",
    ".",
    "../../etc/passwd",
    "with space",
    " padded ",
    "ünïcödé/🤖.json",
    "%2e%2e",
    "back\\slash",
    "quote'\"",
    "a?b#c&d=e",
    "tab\there",
    "new\nline",
    "cr\rcontrol\x01del\x7f",
    "x" * 300,  # one component longer than a file name may be
    "é" * 512,  # exactly 1024 UTF-8 bytes
    "nonchar\ufffe",  # not allowed in XML 1.0: S3 listings must still get past them
    "nonchar\uffff",
    "nonchar\uffff/after",
    "\U0010ffff",  # the last code point
]


async def raises(code: str, awaitable: Any) -> StoreError:
    """Await and require a StoreError with exactly this code and a non-empty message."""
    with pytest.raises(StoreError) as info:
        await awaitable
    err = info.value
    assert err.code == code, f"expected [{code}], got {err!s}"
    assert err.message and str(err).startswith(f"[{code}] ")
    return err


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [block async for block in stream]


async def all_keys(store: ArtifactStore, prefix: str = "", limit: int = 1000) -> list[str]:
    keys: list[str] = []
    cursor = None
    while True:
        page = await store.list_keys(prefix, limit=limit, cursor=cursor)
        keys.extend(page.keys)
        if page.next_cursor is None:
            return keys
        cursor = page.next_cursor


def blob(n: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes (so misplaced chunks are caught)."""
    out = bytearray()
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest()
    while len(out) < n:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:n])


#: How many keys each multi-process race contends for, and how many processes race.
RACE_KEYS = 12
RACE_PROCESSES = 4


async def put_if_absent_racer(
    barrier: Barrier, url: str, prefix: str, keys: int, tag: int
) -> list[bool]:
    """In a child process: race the other children to create each key; True where won."""
    won: list[bool] = []
    async with open_artifact_store(url) as store:
        await store.exists(f"{prefix}warm-up")  # connect before the race starts
        for i in range(keys):
            barrier.wait(timeout=60)
            try:
                await store.put(f"{prefix}{i}", race_value(tag, i), if_absent=True)
                won.append(True)
            except StoreError as err:
                if err.code != "already_exists":
                    raise
                won.append(False)
    return won


def race_value(tag: int, i: int) -> bytes:
    """Big enough that a write takes a while, distinct per writer."""
    return f"writer {tag} key {i};".encode() + blob(200_000, seed=tag * 1000 + i)


class CreateOnlyContract:
    """``put(key, data, if_absent=True)``: create, never overwrite (mixed into the suite)."""

    durable: ClassVar[bool]

    async def test_put_if_absent_creates_only(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        await s.put("once", b"first", if_absent=True)
        before = await s.stat("once")
        for data in (b"second", [b"chunk", b"s"], blob(300_000)):
            err = await raises("already_exists", s.put("once", data, if_absent=True))
            assert "once" in err.message and err.details.get("key") == "once"
        assert await s.get("once") == b"first"
        assert await s.stat("once") == before
        assert await all_keys(s) == ["once"]
        await s.put("once", b"plain puts still overwrite", if_absent=False)
        assert await s.get("once") == b"plain puts still overwrite"
        await s.delete("once")
        await s.put("once", b"created again", if_absent=True)
        assert await s.get("once") == b"created again"

    async def test_put_if_absent_from_chunks(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store

        async def agen() -> AsyncIterator[bytes]:
            for part in (b"as", b"ync"):
                await asyncio.sleep(0)
                yield part

        await s.put("dir/a", agen(), if_absent=True)
        await s.put("dir/s", iter([b"sy", b"nc"]), if_absent=True)
        await s.put("dir/e", b"", if_absent=True)
        assert [await s.get(k) for k in ("dir/a", "dir/s", "dir/e")] == [b"async", b"sync", b""]
        await raises("already_exists", s.put("dir/e", agen(), if_absent=True))
        assert await s.get("dir/e") == b""

    async def test_put_if_absent_bad_flag(self, artifact_store: ArtifactStore) -> None:
        for flag in (1, "yes", None):
            await raises(
                "validation_error",
                artifact_store.put("k", b"x", if_absent=flag),  # type: ignore[arg-type]
            )
        assert not await artifact_store.exists("k")

    async def test_key_created_during_create_only_put_wins(
        self, artifact_store: ArtifactStore
    ) -> None:
        """The create-only put is decided when it completes, not when it starts."""
        s = artifact_store
        halfway = asyncio.Event()
        resume = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"create-only;"
            halfway.set()
            await resume.wait()
            yield blob(100_000)

        writer = asyncio.create_task(s.put("contested", slow(), if_absent=True))
        await halfway.wait()
        await s.put("contested", b"got there first")
        resume.set()
        await raises("already_exists", writer)
        assert await s.get("contested") == b"got there first"
        assert await all_keys(s) == ["contested"]

    async def test_put_if_absent_concurrent_tasks(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        for round_ in range(3):
            key = f"race/{round_}"
            values = [race_value(tag, round_) for tag in range(8)]
            results = await asyncio.gather(
                *(s.put(key, [v[:1000], v[1000:]], if_absent=True) for v in values),
                return_exceptions=True,
            )
            winners = [i for i, r in enumerate(results) if r is None]
            assert len(winners) == 1, results
            for r in results:
                assert r is None or (isinstance(r, StoreError) and r.code == "already_exists")
            assert await s.get(key) == values[winners[0]]

    def test_put_if_absent_race_across_processes(self, artifact_url: str) -> None:
        """Separate OS processes, each with its own store object: exactly one creates."""
        if not self.durable:
            pytest.skip("a second store object on this URL does not share the data")
        prefix = "xproc/"
        results = run_processes(
            put_if_absent_racer,
            [(artifact_url, prefix, RACE_KEYS, tag) for tag in range(RACE_PROCESSES)],
        )
        winners = [
            [tag for tag in range(RACE_PROCESSES) if results[tag][i]] for i in range(RACE_KEYS)
        ]
        assert all(len(w) == 1 for w in winners), winners

        async def check() -> None:
            async with open_artifact_store(artifact_url) as store:
                for i, w in enumerate(winners):
                    assert await store.get(f"{prefix}{i}") == race_value(w[0], i)
                keys = await all_keys(store, prefix)
                assert keys == sorted(f"{prefix}{i}" for i in range(RACE_KEYS))

        asyncio.run(check())


class ArtifactStoreContract(CreateOnlyContract):
    """Every rule of contract 4 that a store object can show."""

    durable: ClassVar[bool] = True
    #: The keys ``test_keys_are_stored_faithfully`` round-trips; narrow it only for a
    #: documented limit of a test server, never of the backend.
    faithful_keys: ClassVar[list[str]] = FAITHFUL_KEYS

    @pytest.fixture
    def artifact_url(self) -> str:
        raise NotImplementedError("a contract subclass must provide an artifact_url fixture")

    @pytest.fixture
    async def artifact_store(self, artifact_url: str) -> AsyncIterator[Any]:
        store = open_artifact_store(artifact_url)
        async with store:
            yield store

    # ---------------------------------------------------------------- put / get / delete

    async def test_round_trip_bytes_like(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        await s.put("b", b"bytes")
        await s.put("ba", bytearray(b"bytearray"))
        await s.put("mv", memoryview(b"xxmemoryviewxx")[2:-2])
        await s.put("empty", b"")
        assert await s.get("b") == b"bytes"
        assert await s.get("ba") == b"bytearray"
        assert await s.get("mv") == b"memoryview"
        assert await s.get("empty") == b""
        assert type(await s.get("b")) is bytes

    async def test_put_from_chunks_sync_and_async(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        parts: list[bytes | bytearray | memoryview] = [
            b"one,",
            bytearray(b"two,"),
            memoryview(b"three"),
            b"",
        ]
        await s.put("list", parts)
        await s.put("gen", (p for p in parts))

        async def agen() -> AsyncIterator[bytes]:
            for p in parts:
                await asyncio.sleep(0)
                yield bytes(p)

        await s.put("async", agen())
        await s.put("none", iter([]))
        for key in ("list", "gen", "async"):
            assert await s.get(key) == b"one,two,three"
        assert await s.get("none") == b""

    async def test_put_overwrites(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        await s.put("k", b"old and longer")
        await s.put("k", b"new")
        assert await s.get("k") == b"new"
        assert await all_keys(s) == ["k"]

    async def test_bad_data_is_a_validation_error(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        await raises("validation_error", s.put("k", "text is not bytes"))  # type: ignore[arg-type]
        await raises("validation_error", s.put("k", 42))  # type: ignore[arg-type]
        await raises("validation_error", s.put("k", None))  # type: ignore[arg-type]
        await raises("validation_error", s.put("k", [b"ok", "not ok"]))  # type: ignore[list-item]
        assert not await s.exists("k")

    async def test_get_unknown_key_is_not_found(self, artifact_store: ArtifactStore) -> None:
        err = await raises("not_found", artifact_store.get("nope/missing"))
        assert "nope/missing" in err.message
        await raises("not_found", artifact_store.stat("nope"))
        await raises("not_found", collect(artifact_store.get_stream("nope")))

    async def test_delete_is_idempotent(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        await s.put("d/k", b"x")
        await s.delete("d/k")
        await s.delete("d/k")
        await s.delete("never/was")
        assert not await s.exists("d/k")
        await raises("not_found", s.get("d/k"))
        await s.put("d/k", b"again")
        assert await s.get("d/k") == b"again"

    async def test_exists(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        assert not await s.exists("e")
        await s.put("e", b"")
        assert await s.exists("e")
        assert not await s.exists("e/child")

    async def test_unknown_options_are_refused(self, artifact_store: ArtifactStore) -> None:
        await raises("validation_error", artifact_store.put("k", b"x", no_such_option=1))
        await raises("validation_error", artifact_store.get("k", no_such_option=1))
        await raises("validation_error", artifact_store.delete("k", no_such_option=1))

    # ---------------------------------------------------------------- keys

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "nul\x00inside",
            "x" * 1025,
            "é" * 513,  # 1026 UTF-8 bytes, 513 characters
            "\ud800lone surrogate",
            b"bytes",
            None,
            7,
        ],
        ids=["empty", "nul", "1025-ascii", "1026-utf8", "surrogate", "bytes", "none", "int"],
    )
    async def test_bad_keys_are_validation_errors(
        self, artifact_store: ArtifactStore, key: Any
    ) -> None:
        s = artifact_store
        await raises("validation_error", s.put(key, b"x"))
        await raises("validation_error", s.get(key))
        await raises("validation_error", s.delete(key))
        await raises("validation_error", s.exists(key))
        await raises("validation_error", s.stat(key))
        await raises("validation_error", collect(s.get_stream(key)))
        assert await all_keys(s) == []

    async def test_keys_are_stored_faithfully(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        keys = self.faithful_keys
        for i, key in enumerate(keys):
            await s.put(key, f"value {i}".encode())
        for i, key in enumerate(keys):
            assert await s.get(key) == f"value {i}".encode(), key
            assert await s.exists(key)
            assert (await s.stat(key)).key == key
        assert await all_keys(s) == sorted(keys)
        assert await all_keys(s, limit=3) == sorted(keys)
        for key in keys:
            await s.delete(key)
        assert await all_keys(s) == []

    async def test_key_that_is_also_a_prefix(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        await s.put("a", b"1")
        await s.put("a/b", b"2")
        await s.put("a/b/c", b"3")
        assert [await s.get(k) for k in ("a", "a/b", "a/b/c")] == [b"1", b"2", b"3"]
        await s.delete("a/b")
        assert await all_keys(s) == ["a", "a/b/c"]

    # ---------------------------------------------------------------- stat

    async def test_stat(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        before = datetime.now(UTC) - timedelta(seconds=5)
        data = blob(100_003)
        await s.put("st/k", data)
        st = await s.stat("st/k")
        after = datetime.now(UTC) + timedelta(seconds=5)
        assert st.key == "st/k"
        assert st.size == len(data)
        assert st.sha256 == hashlib.sha256(data).hexdigest()
        assert st.modified_at.tzinfo is not None and st.modified_at.utcoffset() == timedelta(0)
        assert before <= st.modified_at <= after
        await s.put("st/k", [b"ch", b"unks"])
        st2 = await s.stat("st/k")
        assert (st2.size, st2.sha256) == (6, hashlib.sha256(b"chunks").hexdigest())
        await s.put("st/empty", b"")
        st3 = await s.stat("st/empty")
        assert (st3.size, st3.sha256) == (0, hashlib.sha256(b"").hexdigest())

    # ---------------------------------------------------------------- streaming

    async def test_get_stream_yields_bounded_chunks(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        data = blob(300_001)
        await s.put("big", data)
        blocks = await collect(s.get_stream("big", chunk_size=65_536))
        assert b"".join(blocks) == data
        assert all(0 < len(b) <= 65_536 for b in blocks)
        assert len(blocks) >= 5
        await s.put("zero", b"")
        assert b"".join(await collect(s.get_stream("zero"))) == b""
        await raises("validation_error", collect(s.get_stream("big", chunk_size=0)))

    async def test_get_stream_chunks_are_full_but_the_last(
        self, artifact_store: ArtifactStore
    ) -> None:
        # Far more than a socket buffers at once: a backend passing on each short read
        # would hand out many small chunks.
        s = artifact_store
        data = blob(9 * 1024 * 1024 + 1)
        await s.put("full", data)
        blocks = await collect(s.get_stream("full", chunk_size=4 * 1024 * 1024))
        assert [len(b) for b in blocks] == [4 << 20, 4 << 20, (1 << 20) + 1]
        assert b"".join(blocks) == data

    async def test_stream_stopped_early_leaves_store_usable(
        self, artifact_store: ArtifactStore
    ) -> None:
        s = artifact_store
        data = blob(200_000)
        await s.put("k", data)
        for _ in range(20):
            stream = s.get_stream("k", chunk_size=1000)
            first = await anext(aiter(stream))
            assert first == data[:1000]
            await stream.aclose()  # type: ignore[attr-defined]
        assert await s.get("k") == data

    async def test_large_object_from_chunks(self, artifact_store: ArtifactStore) -> None:
        """Big enough to take the multipart / pipelined paths of every backend."""
        s = artifact_store
        chunk = blob(1 << 20, seed=3)
        count = 21

        def chunks() -> Iterator[bytes]:
            for i in range(count):
                yield chunk[i:] + chunk[:i]

        expected = hashlib.sha256()
        for part in chunks():
            expected.update(part)
        await s.put("large", chunks())
        st = await s.stat("large")
        assert st.size == count << 20
        assert st.sha256 == expected.hexdigest()
        got = hashlib.sha256()
        async for block in s.get_stream("large"):
            got.update(block)
        assert got.hexdigest() == expected.hexdigest()
        assert hashlib.sha256(await s.get("large")).hexdigest() == expected.hexdigest()
        whole = b"".join(chunks())
        await s.put("large", whole)  # the same size as one bytes object
        assert await s.get("large") == whole

    # ---------------------------------------------------------------- atomicity

    async def test_reader_sees_old_object_until_put_completes(
        self, artifact_store: ArtifactStore
    ) -> None:
        s = artifact_store
        await s.put("atomic", b"old")
        halfway = asyncio.Event()
        resume = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"new-part-1;"
            halfway.set()
            await resume.wait()
            yield b"new-part-2"

        writer = asyncio.create_task(s.put("atomic", slow()))
        await halfway.wait()
        assert await s.get("atomic") == b"old"
        assert (await s.stat("atomic")).size == 3
        assert await all_keys(s) == ["atomic"]
        resume.set()
        await writer
        assert await s.get("atomic") == b"new-part-1;new-part-2"

    async def test_failed_put_leaves_old_object(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        await s.put("f/k", b"old")

        def broken() -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("producer failed")

        with pytest.raises(RuntimeError, match="producer failed"):
            await s.put("f/k", broken())
        assert await s.get("f/k") == b"old"

        async def broken_async() -> AsyncIterator[bytes]:
            yield blob(300_000)
            raise RuntimeError("async producer failed")

        with pytest.raises(RuntimeError, match="async producer failed"):
            await s.put("f/new", broken_async())
        assert not await s.exists("f/new")
        assert await all_keys(s) == ["f/k"]

    async def test_cancelled_put_leaves_old_object(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        await s.put("c", b"old")
        started = asyncio.Event()

        async def endless() -> AsyncIterator[bytes]:
            while True:
                started.set()
                yield b"x" * 10_000
                await asyncio.sleep(0)

        task = asyncio.create_task(s.put("c", endless()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await s.get("c") == b"old"
        assert await all_keys(s) == ["c"]

    async def test_concurrent_puts_leave_one_whole_version(
        self, artifact_store: ArtifactStore
    ) -> None:
        s = artifact_store
        versions = [blob(50_000 + i, seed=i) for i in range(8)]
        await asyncio.gather(*(s.put("race", [v[:1000], v[1000:]]) for v in versions))
        got = await s.get("race")
        assert got in versions
        st = await s.stat("race")
        assert st.sha256 == hashlib.sha256(got).hexdigest()

    # ---------------------------------------------------------------- list_keys

    async def test_list_keys_sorted_with_prefix(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        keys = ["b", "a/2", "a/1", "a-1", "a b", "ab", "a", "é", "Z", "a/1/x", "~"]
        for k in keys:
            await s.put(k, b"")
        assert (await s.list_keys()).keys == sorted(keys)
        assert (await s.list_keys("a/")).keys == ["a/1", "a/1/x", "a/2"]
        assert (await s.list_keys("a")).keys == sorted(k for k in keys if k.startswith("a"))
        assert (await s.list_keys("a/1")).keys == ["a/1", "a/1/x"]
        assert (await s.list_keys("zzz")).keys == []
        page = await s.list_keys("a/")
        assert page.next_cursor is None

    async def test_list_keys_pages(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        keys = [f"p/{i:03d}" for i in range(25)] + [f"p/{i:03d}/sub" for i in range(0, 25, 5)]
        await asyncio.gather(*(s.put(k, b"v") for k in keys))
        await s.put("q", b"outside the prefix")
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await s.list_keys("p/", limit=7, cursor=cursor)
            assert len(page.keys) <= 7
            seen.extend(page.keys)
            pages += 1
            if page.next_cursor is None:
                break
            assert len(page.keys) == 7
            cursor = page.next_cursor
        assert seen == sorted(keys)
        assert pages == 5
        exact = await s.list_keys("p/", limit=len(keys))
        assert exact.keys == sorted(keys) and exact.next_cursor is None

    async def test_list_keys_bad_arguments(self, artifact_store: ArtifactStore) -> None:
        s = artifact_store
        for i in range(3):
            await s.put(f"k{i}", b"")
        page = await s.list_keys("k", limit=1)
        assert page.next_cursor is not None
        good = page.next_cursor
        await raises("invalid_cursor", s.list_keys("other", cursor=good))
        await raises("invalid_cursor", s.list_keys("", cursor=good))
        tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
        await raises("invalid_cursor", s.list_keys("k", cursor=tampered))
        head, _, mac = good.partition(".")
        await raises("invalid_cursor", s.list_keys("k", cursor="A" + head + "." + mac))
        for junk in ("", "garbage", "a.b.c", "%%%.", "eyJ9.0000"):
            await raises("invalid_cursor", s.list_keys("k", cursor=junk))
        await raises("invalid_cursor", s.list_keys("k", cursor=7))  # type: ignore[arg-type]
        for limit in (0, -1, 1.5, "3", None, 10**9):
            await raises("validation_error", s.list_keys(limit=limit))  # type: ignore[arg-type]
        await raises("validation_error", s.list_keys(None))  # type: ignore[arg-type]
        await raises("validation_error", s.list_keys("nul\x00"))
        assert (await s.list_keys("k", cursor=good)).keys == ["k1", "k2"]

    # ---------------------------------------------------------------- lifecycle

    async def test_closed_store_is_a_storage_error(self, artifact_url: str) -> None:
        store = open_artifact_store(artifact_url)
        async with store:
            await store.put("k", b"v")
        await store.close()  # twice is fine
        err = await raises("storage_error", store.get("k"))
        assert err.details.get("operation") == "get"
        await raises("storage_error", store.put("k", b"v"))
        await raises("storage_error", store.list_keys())
        await raises("storage_error", collect(store.get_stream("k")))

    async def test_second_store_object_on_same_url(
        self, artifact_store: ArtifactStore, artifact_url: str
    ) -> None:
        await artifact_store.put("shared", b"from the first")
        async with open_artifact_store(artifact_url) as other:
            if self.durable:
                assert await other.get("shared") == b"from the first"
                await other.put("shared", b"from the second")
                assert await artifact_store.get("shared") == b"from the second"
            else:
                assert not await other.exists("shared")
