"""PostgreSQL through a real pgbouncer in transaction pooling mode (docs/postgres.md).

The module starts its own pgbouncer on a free loopback port (own ini and userlist in a temp
folder, ``pool_mode=transaction``, trust auth) in front of the test server; it never touches
a shared pooler. Each test works in its own schema, as in test_postgres.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg
import pytest

from agent_session_store.errors import StorageError, StoreError, ValidationError, redact
from agent_session_store.models import Event, EventType
from agent_session_store.postgres import PostgresSessionStore
from agent_session_store.testing import DurableSessionStoreContract, workers
from agent_session_store.testing.contract_query import QueryContract
from test_postgres import BASE_DSN, _drop_schema

# the store URL options behind pgbouncer, as docs/postgres.md gives them
CACHE_OFF = "statement_cache_size=0"
LISTEN_DIRECT = f"listen_url={quote(BASE_DSN, safe='')}"
POLL = "notify=poll&poll_interval=0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Bouncer:
    dsn: str  # postgresql://postgres@127.0.0.1:PORT/test, through pgbouncer
    log: Path


def _binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
    )
    if found is None:
        pytest.fail("pgbouncer is not installed: run scripts/ensure-services.sh (make services)")
    return found


async def _ready(dsn: str, proc: subprocess.Popen[bytes]) -> bool:
    """True once pgbouncer answers; False if it exited."""
    async with asyncio.timeout(30):
        while True:
            if proc.poll() is not None:
                return False
            try:
                conn = await asyncpg.connect(dsn, statement_cache_size=0, timeout=2)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.05)  # not listening yet: poll with the deadline above
                continue
            await conn.close()
            return True


@pytest.fixture(scope="module")
def bouncer() -> Iterator[Bouncer]:
    """Our own pgbouncer. It refuses to run as root, so as root it runs with ``-u postgres``
    (the server's system user, present wherever the server package is), and its folder is
    handed to that user so it can write its log."""
    target = urlsplit(BASE_DSN)
    folder = Path(tempfile.mkdtemp(prefix="ass-pgbouncer-"))
    port = _free_port()
    log = folder / "pgbouncer.log"
    (folder / "userlist.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={target.hostname} port={target.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        # few server connections for many clients: statements of one client connection
        # really land on different server sessions
        "default_pool_size = 4\nmax_client_conn = 500\n"
        f"logfile = {log}\n"
    )
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        for name in ("userlist.txt", "pgbouncer.ini"):
            os.chown(folder / name, user.pw_uid, user.pw_gid)
        run_as = ["-u", "postgres"]
    proc = subprocess.Popen(
        [_binary(), *run_as, str(folder / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    dsn = f"postgresql://postgres@127.0.0.1:{port}/{target.path.lstrip('/')}"
    try:
        if not asyncio.run(_ready(dsn, proc)):
            pytest.fail(f"pgbouncer exited with {proc.returncode}: {log.read_text()}")
        yield Bouncer(dsn, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def schema(unique_name: str) -> Iterator[str]:
    yield unique_name
    _drop_schema(unique_name)


def _url(bouncer: Bouncer, schema: str, *options: str) -> str:
    return "&".join([f"{bouncer.dsn}?schema={schema}&auto_migrate=true", *options])


class TestThroughPgbouncerListeningDirect(DurableSessionStoreContract):
    """The whole contract with the pool through pgbouncer and LISTEN on the server itself."""

    @pytest.fixture
    def store_url(self, bouncer: Bouncer, schema: str) -> str:
        return _url(bouncer, schema, CACHE_OFF, LISTEN_DIRECT)


class TestThroughPgbouncerPolling(DurableSessionStoreContract):
    """The contract (less its queries) with no direct connection at all: wakes come from
    polling."""

    @pytest.fixture
    def store_url(self, bouncer: Bouncer, schema: str) -> str:
        return _url(bouncer, schema, CACHE_OFF, POLL)


# The query contract already runs through pgbouncer in the class above, and polling changes
# only how readers wake: not again here (it is the slowest part through the pooler).
for _name in dir(QueryContract):
    if _name.startswith("test_"):
        setattr(TestThroughPgbouncerPolling, _name, None)


def _event(session_id: str, i: int = 0) -> Event:
    return Event(type=EventType.MESSAGE_STREAMED, session_id=session_id, data={"i": i})


async def _workload(store: PostgresSessionStore, prefix: str) -> list[BaseException]:
    """200 operations of a few statement kinds from 10 pooled connections at once."""

    async def op(i: int) -> None:
        sid = f"{prefix}{i % 5}"
        kind = i % 4
        if kind == 0:
            await store.append_event(_event(sid, i))
        elif kind == 1:
            await store.get_events(sid, limit=5)
        elif kind == 2:
            await store.get_latest_sequence(sid)
        else:
            await store.list_sessions(limit=3)

    found = await asyncio.gather(*(op(i) for i in range(200)), return_exceptions=True)
    return [r for r in found if isinstance(r, BaseException)]


async def test_without_the_cache_option_operations_fail_and_say_what_to_add(
    bouncer: Bouncer, schema: str
) -> None:
    """asyncpg's named prepared statements do not survive transaction pooling: the calls
    fail (or the open does), each with the option that fixes it; with it, none fails."""
    failures: list[BaseException] = []
    store = PostgresSessionStore.from_url(_url(bouncer, schema))
    try:
        await store.open()
        failures = await _workload(store, "bad")
    except StoreError as exc:
        failures = [exc]
    finally:
        await store.close()
    assert failures, "expected prepared-statement failures through transaction pooling"
    for failure in failures:
        assert isinstance(failure, StorageError), repr(failure)
        assert failure.details.get("reason") == "transaction_pooler", failure.message
        assert "statement_cache_size=0" in failure.message
    async with PostgresSessionStore.from_url(_url(bouncer, schema, CACHE_OFF)) as fixed:
        assert await _workload(fixed, "ok") == []
        assert await fixed.get_latest_sequence("ok0") == 10


async def _reader_waits(store: PostgresSessionStore, session_id: str) -> None:
    """Until the reader's watch is live (LISTEN active, or the poll's baseline read)."""
    async with asyncio.timeout(30):
        while not (  # noqa: ASYNC110 - the store offers no event for this
            session_id in store._watching and store._watching[session_id].done()
        ):
            await asyncio.sleep(0.01)


async def _wake_after_other_process_appends(url: str, timeout_s: float) -> tuple[float, float]:
    """A reader here long-polls with ``timeout_s``; another process appends once it waits.
    Returns (seconds from that append to the reader's return, seconds the reader waited)."""
    async with PostgresSessionStore.from_url(url) as store:
        started = time.time()
        reader = asyncio.create_task(store.get_events("s", wait_timeout_ms=int(timeout_s * 1000)))
        await _reader_waits(store, "s")
        loop = asyncio.get_running_loop()
        [appended] = await loop.run_in_executor(
            None,
            workers.run_processes,
            workers.append_after_barrier,
            [(url, "s", "tool_call_started")],
        )
        got = await asyncio.wait_for(reader, timeout_s + 30)
        woke = time.time()
        assert [e.type for e in got] == [EventType.TOOL_CALL_STARTED]
        return woke - appended, woke - started


async def test_listening_direct_wakes_a_reader_when_another_process_appends(
    bouncer: Bouncer, schema: str
) -> None:
    latency, _ = await _wake_after_other_process_appends(
        _url(bouncer, schema, CACHE_OFF, LISTEN_DIRECT), 20
    )
    assert latency < 3, f"woken {latency:.2f} s after the append (timeout 20 s)"


async def test_polling_wakes_a_reader_within_the_interval(bouncer: Bouncer, schema: str) -> None:
    url = _url(bouncer, schema, CACHE_OFF, "notify=poll&poll_interval=0.2")
    latency, _ = await _wake_after_other_process_appends(url, 20)
    # one interval, plus the poll's own query and the reader's re-query on a loaded machine
    assert latency < 0.2 + 2, f"woken {latency:.2f} s after the append (timeout 20 s)"


async def test_listening_on_the_pool_hears_nothing(
    bouncer: Bouncer, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Why the options exist: LISTEN on a pooled connection registers on a server session
    the pooler lends to others, so the reader returns only at its timeout's last look. The
    store says so in its log, naming both ways out."""
    with caplog.at_level(logging.WARNING, logger="agent_session_store.postgres"):
        latency, waited = await _wake_after_other_process_appends(
            _url(bouncer, schema, CACHE_OFF), 4
        )
    assert waited >= 4 and latency > 0.5, (latency, waited)
    [warning] = [r.getMessage() for r in caplog.records if "listen_url" in r.getMessage()]
    assert "notify=poll" in warning


class _FlakyPolls(PostgresSessionStore):
    """Its first polls fail, as when the database is briefly unreachable."""

    failures = 3

    async def _latest_sequences(self, session_ids: list[str]) -> dict[str, int]:
        poller = self._poller
        # the baseline read of watch() passes; the polls after it fail until failures runs out
        if poller is not None and session_ids[0] in poller._seen and self.failures:
            self.failures -= 1
            raise StorageError("injected: the database is unreachable")
        return await super()._latest_sequences(session_ids)


async def test_failed_polls_are_retried_and_lose_no_wake(
    bouncer: Bouncer, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An append committed while the polls fail still wakes the reader once they work again
    (the numbers are compared with the last ones seen), and the failure is logged once."""
    url = _url(bouncer, schema, CACHE_OFF, "notify=poll&poll_interval=0.05")
    async with _FlakyPolls.from_url(url) as reader, PostgresSessionStore.from_url(url) as writer:
        with caplog.at_level(logging.WARNING, logger="agent_session_store.polling"):
            waiting = asyncio.create_task(reader.get_events("s", wait_timeout_ms=20_000))
            await _reader_waits(reader, "s")
            appended = await writer.append_event_with_sequence(_event("s"))
            t0 = time.monotonic()
            assert await asyncio.wait_for(waiting, 30) == [appended]
        assert time.monotonic() - t0 < 5
        assert reader.failures == 0  # the failures did happen, before the wake
    assert len([r for r in caplog.records if "polling failed" in r.getMessage()]) == 1


async def test_polling_costs_one_query_per_interval_and_none_when_idle(
    bouncer: Bouncer, schema: str
) -> None:
    """100 readers of 10 sessions: one poll query per interval for all of them, and the
    poller stops once nobody waits."""
    async with PostgresSessionStore.from_url(
        _url(bouncer, schema, CACHE_OFF, "notify=poll&poll_interval=0.05")
    ) as store:
        poller = store._poller
        assert poller is not None
        readers = [
            asyncio.create_task(store.get_events(f"s{i % 10}", wait_timeout_ms=60_000))
            for i in range(100)
        ]
        for i in range(10):
            await _reader_waits(store, f"s{i}")
        begun, t0 = poller.polls, time.monotonic()
        async with asyncio.timeout(30):
            while poller.polls < begun + 10:  # noqa: ASYNC110 - counting polls as they come
                await asyncio.sleep(0.01)
        elapsed = time.monotonic() - t0
        # 10 polls cannot take less than 9 intervals: no poll per reader or per session
        assert elapsed >= 9 * 0.05
        async with PostgresSessionStore.from_url(_url(bouncer, schema, CACHE_OFF)) as writer:
            for i in range(10):
                await writer.append_event(_event(f"s{i}"))
        assert all(len(r) == 1 for r in await asyncio.wait_for(asyncio.gather(*readers), 30))
        task = poller._task
        assert task is not None
        await asyncio.wait_for(task, 5)  # nobody waits: the poller ends by itself


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("notify=push", "notify"),
        ("notify=poll&poll_interval=0", "poll_interval"),
        ("notify=poll&poll_interval=61", "poll_interval"),
        (f"notify=poll&{LISTEN_DIRECT}", "notify"),
        ("listen_url=http%3A%2F%2Fh%2Fdb", "listen_url"),
        (f"listen_url={quote(BASE_DSN + '?schema=x', safe='')}", "listen_url"),
        ("statement_cache_size=-1", None),
        ("statement_cache_size=none", "statement_cache_size"),
    ],
)
def test_bad_pooler_options_are_validation_errors(query: str, field: str | None) -> None:
    with pytest.raises(ValidationError) as info:
        PostgresSessionStore.from_url(f"{BASE_DSN}?{query}")
    if field is not None:
        assert info.value.details.get("field") == field


def test_listen_url_password_never_shows() -> None:
    inner = quote("postgresql://bob:s3cret@127.0.0.1:5432/test?sslmode=disable", safe="")
    url = f"postgresql://bob:s3cret@127.0.0.1:1/test?listen_url={inner}"
    assert "s3cret" not in repr(PostgresSessionStore.from_url(url))
    assert "s3cret" not in redact(url)  # the percent-encoded one too
    assert redact(url).count("bob") == 2
    with pytest.raises(ValidationError) as info:
        PostgresSessionStore.from_url(f"{BASE_DSN}?listen_url={quote('http://bob:s3cret@h/db')}")
    assert "s3cret" not in str(info.value) and "bob" in str(info.value)


async def test_a_given_pool_through_pgbouncer_listens_on_listen_dsn(
    bouncer: Bouncer, schema: str
) -> None:
    """With a pool the application made (through pgbouncer), ``listen_dsn`` still puts
    LISTEN on the server itself, so a reader wakes at once, not at its timeout."""
    pool = await asyncpg.create_pool(bouncer.dsn, statement_cache_size=0, min_size=1, max_size=4)
    try:
        store = PostgresSessionStore(pool=pool, schema=schema, listen_dsn=BASE_DSN)
        await store.migrate()
        async with store, PostgresSessionStore.from_url(_url(bouncer, schema, CACHE_OFF)) as writer:
            waiting = asyncio.create_task(store.get_events("s", wait_timeout_ms=20_000))
            await _reader_waits(store, "s")
            appended = await writer.append_event_with_sequence(_event("s"))
            t0 = time.monotonic()
            assert await asyncio.wait_for(waiting, 30) == [appended]
            assert time.monotonic() - t0 < 3
    finally:
        await pool.close()
