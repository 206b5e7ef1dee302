"""The Redis backend against the shared contract, on a single node and on a real local
cluster, plus what only Redis has: key layout, prefixes, cluster caveats, faults.

The single node is the shared server on 127.0.0.1:6379; the cluster (three masters) and the
servers the fault tests stop are started here, on free loopback ports, and stopped at the end.
Every test uses its own key prefix and removes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from agent_session_store import urls
from agent_session_store.codec import encode_event
from agent_session_store.errors import StoreError
from agent_session_store.models import (
    Event,
    EventType,
    Run,
    Session,
    SessionStatus,
    new_id,
    to_event_type,
)
from agent_session_store.redis import RedisSessionStore
from agent_session_store.redis.rows import blob
from agent_session_store.retention import RetentionPolicy
from agent_session_store.testing import DurableSessionStoreContract
from agent_session_store.transfer import SessionExport
from service_urls import REDIS_URL, redis_host_port


def open_session_store(url: str) -> RedisSessionStore:
    """``urls.open_session_store``, narrowed for tests that read backend attributes."""
    store = urls.open_session_store(url)
    assert isinstance(store, RedisSessionStore), store
    return store


SINGLE = REDIS_URL  # tests/service_urls.py


def _free_port() -> int:
    """A loopback port that is free, and whose cluster-bus port (+10000) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class _Server:
    """A redis-server process of our own: no persistence, loopback only."""

    def __init__(self, data: Path, port: int, *extra: str) -> None:
        self.port = port
        self.data = data
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        for _ in range(200):
            ok = subprocess.run(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "ping"],
                capture_output=True,
                text=True,
            )
            if ok.stdout.strip() == "PONG":
                return
            time.sleep(0.05)  # server start-up, not a race in the code under test
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)  # a test may have paused it
                self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


def _start_cluster(root: Path, node_timeout_ms: int = 5000) -> list[_Server]:
    """Three cluster-enabled servers of our own made into one cluster (no replicas)."""
    assert shutil.which("redis-server") and shutil.which("redis-cli")
    servers: list[_Server] = []
    try:
        for i in range(3):
            port = _free_port()
            server = _Server(
                root / f"n{i}",
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(root / f"n{i}" / "nodes.conf"),
                "--cluster-node-timeout",
                str(node_timeout_ms),
            )
            server.start()
            servers.append(server)
        addrs = [f"127.0.0.1:{s.port}" for s in servers]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addrs,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
        )
        for server in servers:
            for _ in range(400):
                info = subprocess.run(
                    ["redis-cli", "-p", str(server.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                ).stdout
                if "cluster_state:ok" in info:
                    break
                time.sleep(0.05)  # waiting for the cluster to converge at set-up
            else:
                raise RuntimeError("the local Redis Cluster did not converge")
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real three-master Redis Cluster on loopback; yields its seed URL."""
    servers = _start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield f"redis+cluster://127.0.0.1:{servers[0].port}"
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[list[_Server]]:
    """A throw-away three-master cluster for one test that stops or kills its nodes."""
    servers = _start_cluster(tmp_path / "cluster", node_timeout_ms=2000)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


async def _drop_prefix(url: str, prefix: str) -> None:
    """Remove every key under ``prefix`` on every master (test clean-up only)."""
    if url.startswith("redis+cluster://"):
        client = RedisCluster.from_url(url.replace("redis+cluster://", "redis://"))
        async with client:
            for node in client.get_primaries():
                keys = [
                    k
                    async for k in client.scan_iter(
                        match=f"{prefix}:*", count=1000, target_nodes=node
                    )
                ]
                for k in keys:
                    await client.delete(k)
        return
    async with redis.asyncio.Redis.from_url(url) as single:
        keys = [k async for k in single.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await single.delete(*keys[i : i + 500])


class TestRedisSessionStore(DurableSessionStoreContract):
    @pytest.fixture
    async def store_url(self, unique_name: str) -> AsyncIterator[str]:
        yield f"{SINGLE}?prefix={unique_name}"
        await _drop_prefix(SINGLE, unique_name)


class TestRedisClusterSessionStore(DurableSessionStoreContract):
    @pytest.fixture
    async def store_url(self, redis_cluster: str, unique_name: str) -> AsyncIterator[str]:
        yield f"{redis_cluster}?prefix={unique_name}"
        await _drop_prefix(redis_cluster, unique_name)


# ---------------------------------------------------------------- Redis-specific


@pytest.fixture(params=["single", "cluster"])
async def rstore(
    request: pytest.FixtureRequest, unique_name: str
) -> AsyncIterator[RedisSessionStore]:
    base = SINGLE if request.param == "single" else request.getfixturevalue("redis_cluster")
    store = open_session_store(f"{base}?prefix={unique_name}")
    async with store:
        yield store
    await _drop_prefix(base, unique_name)


def _script_calls(store: RedisSessionStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the scripts ``store`` runs from now on, in order."""
    calls: list[str] = []
    real = store.eval

    async def counting(name: str, keys: Any, args: Any) -> Any:
        calls.append(name)
        return await real(name, keys, args)

    monkeypatch.setattr(store, "eval", counting)
    return calls


async def _all_keys(store: RedisSessionStore) -> list[str]:
    r = store._r
    if store.cluster:
        out: list[str] = []
        for node in r.get_primaries():
            out += [k async for k in r.scan_iter(match=f"{store.prefix}:*", target_nodes=node)]
        return out
    return [k async for k in r.scan_iter(match=f"{store.prefix}:*")]


@pytest.mark.parametrize("sid", ["plain", "a{b}c", "}{", "{x}", "%7B", "é:{}:🤖"])
async def test_one_session_shares_one_slot(rstore: RedisSessionStore, sid: str) -> None:
    await rstore.flush(
        Session(id=sid, agent_id="a"),
        Run(id=f"run-{sid}", session_id=sid),
        [Event(type=EventType.RUN_STARTED, session_id=sid, run_id=f"run-{sid}")],
    )
    mine = [k for k in await _all_keys(rstore) if k.startswith(rstore.keys.tag(sid) + ":")]
    # event id -> seq: the claims' sessions keep an ids hash; a single node's id index has it
    ids = {"ids"} if rstore.cluster else set()
    assert {k.rsplit(":", 1)[1] for k in mine} == {"seq", "ev", "x", "t", "s", "runs", "z"} | ids
    assert len({key_slot(k.encode()) for k in mine}) == 1
    # the server agrees (in a cluster it would refuse a script spanning two slots anyway)
    slots = (
        {await rstore._r.execute_command("CLUSTER KEYSLOT", k) for k in mine}
        if (rstore.cluster)
        else {key_slot(k.encode()) for k in mine}
    )
    assert len(slots) == 1
    # a session whose escaped id looks like another's never shares its keys
    assert rstore.keys.tag("a{b}c") != rstore.keys.tag("a%7Bb%7Dc")
    await rstore.delete_session(sid)
    left = [k for k in await _all_keys(rstore) if k.startswith(rstore.keys.tag(sid) + ":")]
    if rstore.cluster:  # only the short-lived 'just deleted' fence stays, and it expires
        assert left == [f"{rstore.keys.tag(sid)}:del"]
        assert 0 < await rstore._r.pttl(left[0]) <= 10_000
    else:
        assert left == []


async def test_prefixes_isolate_applications(unique_name: str) -> None:
    a_url = f"{SINGLE}?prefix={unique_name}_a"
    b_url = f"{SINGLE}?prefix={unique_name}_b"
    try:
        async with open_session_store(a_url) as a, open_session_store(b_url) as b:
            await a.save_session(Session(id="s", agent_id="x"))
            e = await a.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id="s", id="same")
            )
            assert await b.list_sessions() == []
            assert await b.get_events("s") == []
            # the same event id is free in the other application
            other = await b.append_event_with_sequence(
                Event(type=EventType.ERROR_OCCURRED, session_id="t", id="same")
            )
            assert other.session_id == "t" and e.session_id == "s"
            await b.delete_session("t")
            assert [x.id for x in await a.get_events("s")] == ["same"]
            assert all(k.startswith(f"{unique_name}_a:") for k in await _all_keys(a))
    finally:
        await _drop_prefix(SINGLE, f"{unique_name}_a")
        await _drop_prefix(SINGLE, f"{unique_name}_b")


def test_url_options_and_redaction() -> None:
    store = RedisSessionStore.from_url(
        "redis://user:s3cret@127.0.0.1:6379/2?prefix=app1&socket_timeout=1.5&connect_timeout=0.5"
    )
    assert store.prefix == "app1" and not store.cluster
    assert "s3cret" not in repr(store)
    assert RedisSessionStore.from_url("redis+cluster://127.0.0.1:7000").cluster
    assert RedisSessionStore.from_url("redis://127.0.0.1:7000?cluster=true").cluster
    for bad in ("redis://h?prefix=a{b}", "redis://h?nope=1", "redis://h?socket_timeout=0"):
        with pytest.raises(StoreError) as info:
            open_session_store(bad)
        assert info.value.code == "validation_error"


async def test_a_stale_index_update_is_ignored(rstore: RedisSessionStore) -> None:
    """Cluster: the list index lives in another slot and is updated in a second step; a late
    update carrying an older version must not undo a newer one (docs/redis.md)."""
    s = Session(id="s", agent_id="a")
    await rstore.save_session(s)
    done = s.with_status(SessionStatus.COMPLETED)
    await rstore.save_session(done)
    await rstore.index(s, '{"stale": true}', "1")  # version 1: far older than any real one
    assert [x.status for x in await rstore.list_sessions()] == [SessionStatus.COMPLETED]
    assert await rstore.list_sessions(status="pending") == []


async def test_listing_more_sessions_than_lua_can_unpack(rstore: RedisSessionStore) -> None:
    """list_sessions with no limit over 9,000 sessions: the script's HMGET of every id used to
    overflow Lua's C stack (unpack of more than ~8,000 values; found by the peer bench)."""
    n = 9_000
    for start in range(0, n, 500):
        await asyncio.gather(
            *(
                rstore.save_session(Session(id=f"s{i:05}", agent_id="a"))
                for i in range(start, min(start + 500, n))
            )
        )
    listed = await rstore.list_sessions()
    assert sorted(x.id for x in listed) == [f"s{i:05}" for i in range(n)]
    assert len(await rstore.list_sessions(agent_id="a")) == n


async def test_cluster_orphan_claim_is_completed_by_the_next_append(
    redis_cluster: str, unique_name: str
) -> None:
    """Cluster caveat (docs/redis.md): an appender that dies between claiming an id and storing
    it leaves the claim; the next append of that id, from any session, stores the original."""
    url = f"{redis_cluster}?prefix={unique_name}"
    try:
        async with open_session_store(url) as store:
            original = Event(type=EventType.MESSAGE_SENT, session_id="s1", id="e1", data={"v": 1})
            row = encode_event(original)
            await store._r.set(store.keys.claim("e1"), blob(row))  # what a dead writer left
            assert await store.get_events("s1") == []
            got = await store.append_event_with_sequence(
                Event(type=EventType.ERROR_OCCURRED, session_id="s2", id="e1", data={"v": 2})
            )
            assert got == original.replace(sequence_number=1)
            assert await store.get_events("s1") == [got]
            assert await store.get_events("s2") == []
    finally:
        await _drop_prefix(redis_cluster, unique_name)


async def test_single_node_has_no_claim_keys(rstore: RedisSessionStore) -> None:
    """On a single node the id index is one hash changed in the same script as the log."""
    await rstore.append_events(
        [Event(type=EventType.MESSAGE_SENT, session_id="s") for _ in range(3)]
    )
    claims = [k for k in await _all_keys(rstore) if k.startswith(f"{rstore.prefix}:e:")]
    assert len(claims) == (3 if rstore.cluster else 0)


# ---------------------------------------------------------------- faults


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[_Server]:
    server = _Server(tmp_path / "redis", _free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_server_stop_gives_connection_error_then_recovers(own_server: _Server) -> None:
    url = f"redis://127.0.0.1:{own_server.port}/0?prefix=f&socket_timeout=2&connect_timeout=1"
    async with open_session_store(url) as store:
        await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s"))
        own_server.stop()
        for call in (
            store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s")),
            store.get_events("s"),
            store.list_sessions(),
            store.get_events("s", after=5, wait_timeout_ms=30_000),
        ):
            with pytest.raises(StoreError) as info:
                await call
            assert info.value.code == "storage_connection_failed"
            assert info.value.__cause__ is not None
            assert "redis" in info.value.message
        own_server.start()  # no persistence: it comes back empty
        e = await store.append_event_with_sequence(
            Event(type=EventType.MESSAGE_SENT, session_id="s")
        )
        assert e.sequence_number == 1
        assert await store.get_events("s") == [e]


async def test_password_never_shows_in_errors(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    url = f"redis://user:hunter2secret@127.0.0.1:{port}/0?connect_timeout=1"
    store = open_session_store(url)
    with pytest.raises(StoreError) as info:
        await store.get_session("s")
    assert info.value.code == "storage_connection_failed"
    assert "hunter2secret" not in str(info.value) and "hunter2secret" not in repr(store)
    await store.close()


async def test_pubsub_reconnect_wakes_waiters_and_loses_nothing(own_server: _Server) -> None:
    """An append made while the reader's subscription is down still reaches the reader: the
    store wakes every waiter once it has re-subscribed."""
    admin = redis.asyncio.Redis(port=own_server.port, decode_responses=True)
    await admin.acl_setuser(
        "writer", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    url = f"redis://127.0.0.1:{own_server.port}/0?prefix=p"
    writer_url = f"redis://writer:pw@127.0.0.1:{own_server.port}/0?prefix=p"
    async with (
        admin,
        open_session_store(url) as reader_store,
        open_session_store(writer_url) as writer,
    ):
        reader = asyncio.create_task(reader_store.get_events("s", wait_timeout_ms=60_000))
        channel = reader_store.keys.channel("s")
        while (await admin.pubsub_numsub(channel))[0][1] == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # until the reader's subscription is live
        # the reader's user may no longer subscribe: its subscriber drops and cannot come back
        await admin.execute_command("ACL", "SETUSER", "default", "resetchannels")  # type: ignore[no-untyped-call]
        await admin.client_kill_filter(_type="pubsub")
        while (await admin.pubsub_numsub(channel))[0][1] != 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        e = await writer.append_event_with_sequence(
            Event(type=EventType.MESSAGE_SENT, session_id="s")
        )  # published to nobody
        await admin.execute_command("ACL", "SETUSER", "default", "allchannels")  # type: ignore[no-untyped-call]
        assert await asyncio.wait_for(reader, 20) == [e]
        # and the new subscription works for later appends
        later = asyncio.create_task(reader_store.get_events("s", after=1, wait_timeout_ms=60_000))
        while (await admin.pubsub_numsub(channel))[0][1] == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        e2 = await writer.append_event_with_sequence(
            Event(type=EventType.MESSAGE_SENT, session_id="s")
        )
        assert await asyncio.wait_for(later, 20) == [e2]


async def test_a_follower_long_polling_again_subscribes_once(unique_name: str) -> None:
    """Issue 13: a reader long-polling one session call after call keeps the subscription
    between calls (one SUBSCRIBE, not one per call), and a channel nobody waits on is
    unsubscribed once its linger time is over."""
    url = f"{SINGLE}?prefix={unique_name}"
    async with (
        open_session_store(url) as reader,
        open_session_store(url) as writer,
        redis.asyncio.Redis.from_url(SINGLE) as admin,
    ):
        channel = reader.keys.channel("s")
        sub = reader._subscriber(channel)
        sent: list[str] = []
        make = sub._make

        def counting() -> Any:
            conn = make()
            send = conn.send_command

            async def send_command(*args: Any, **kwargs: Any) -> Any:
                sent.append(str(args[0]))
                return await send(*args, **kwargs)

            conn.send_command = send_command
            return conn

        sub._make = counting
        for i in range(5):
            waiting = asyncio.create_task(reader.get_events("s", after=i, wait_timeout_ms=60_000))
            e = await writer.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id="s")
            )
            assert await asyncio.wait_for(waiting, 20) == [e]
        assert sent.count("SUBSCRIBE") == 1 and "UNSUBSCRIBE" not in sent, sent
        assert (await admin.pubsub_numsub(channel))[0][1] == 1
        sub.linger_s = 0.05
        assert await reader.get_events("s", after=5, wait_timeout_ms=10) == []
        async with asyncio.timeout(20):
            while (await admin.pubsub_numsub(channel))[0][1] != 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # until the linger time is over
        assert sent[-1] == "UNSUBSCRIBE" and not sub._linger


async def test_waiting_reader_gets_an_error_when_the_server_stops(own_server: _Server) -> None:
    url = f"redis://127.0.0.1:{own_server.port}/0?prefix=w&socket_timeout=2&connect_timeout=1"
    async with open_session_store(url) as store, redis.asyncio.Redis(port=own_server.port) as admin:
        reader = asyncio.create_task(store.get_events("s", wait_timeout_ms=120_000))
        channel = store.keys.channel("s")
        while (await admin.pubsub_numsub(channel))[0][1] == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        own_server.stop()
        with pytest.raises(StoreError) as info:
            await asyncio.wait_for(reader, 30)  # far sooner than its own 120 s
        assert info.value.code == "storage_connection_failed"


async def test_bad_input_leaves_nothing(rstore: RedisSessionStore) -> None:
    await rstore.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s"))
    before = sorted(await _all_keys(rstore))
    bad = Event(type=EventType.MESSAGE_SENT, session_id="s2", data={"b": b"x"})
    with pytest.raises(StoreError) as info:
        await rstore.flush(Session(id="s2", agent_id="a"), Run(session_id="s2"), [bad])
    assert info.value.code == "validation_error"
    assert sorted(await _all_keys(rstore)) == before
    assert await rstore.get_latest_sequence("s") == 1


async def _snapshot(store: RedisSessionStore) -> dict[str, Any]:
    """Every key of the prefix and its value (DUMP), but the cluster's claims: a refused
    cluster write may leave its claims (they are completed by the next append)."""
    r = store._r
    keys = [k for k in await _all_keys(store) if ":e:{" not in k and ":r:{" not in k]
    return {k: await r.dump(k) for k in keys}


# session keys an append with a run writes, and a value of another type for each
_WRITTEN = {"seq": "hash", "ev": "string", "x": "string", "s": "string", "z": "string"}
_WRITTEN |= {"t": "string"}


# The session's keys on both deployments; the global indexes only a single node keeps.
_KEY_CASES = [(mode, key) for mode in ("single", "cluster") for key in _WRITTEN]
_KEY_CASES += [("single", "touched"), ("single", "eid")]


@pytest.mark.parametrize(("rstore", "key"), _KEY_CASES, indirect=["rstore"])
async def test_a_key_of_another_type_fails_the_write_before_any_change(
    rstore: RedisSessionStore, key: str
) -> None:
    """The write script checks every key it writes before the first write (most by reading
    them, the rest with TYPE), so a key of another type gives a StoreError and leaves
    everything as it was: a script is not rolled back."""
    sid = "wrong-type"
    run = Run(session_id=sid)
    await rstore.flush(Session(id=sid, agent_id="a"), run, [_mk(sid, 0), _mk(sid, 1)])
    names = rstore.keys
    target = {"touched": names.touched_index, "eid": names.event_index}.get(key)
    if target is None:
        from agent_session_store.redis.keys import SESSION_KEYS

        target = names.session(sid)[SESSION_KEYS.index(key)]
    r = rstore.client
    aside = f"{target}:aside"  # same hash tag: same slot
    await r.rename(target, aside)
    if _WRITTEN.get(key) == "hash":
        await r.hset(target, "f", "v")
    else:
        await r.set(target, "not a hash")
    before = await _snapshot(rstore)
    new = [
        # a type the session has (no directory read) and a new one, both in the run
        Event(type=kind, session_id=sid, run_id=run.id)
        for kind in (EventType.MESSAGE_SENT, EventType.TOOL_CALL_STARTED)
    ]
    with pytest.raises(StoreError) as info:
        await rstore.append_events(new)
    assert info.value.code == "storage_error", info.value
    assert await _snapshot(rstore) == before
    await r.delete(target)
    await r.rename(aside, target)
    assert [e.sequence_number for e in await rstore.get_events(sid)] == [1, 2]
    assert [e.sequence_number for e in await rstore.append_events(new)] == [3, 4]
    assert [e.sequence_number for e in await rstore.get_events(sid, run_id=run.id)] == [3, 4]


def _cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


async def test_cluster_slot_move_keeps_long_poll_working(
    redis_cluster: str, unique_name: str
) -> None:
    """A reader subscribed before its session's slot moves to another master is still woken."""
    url = f"{redis_cluster}?prefix={unique_name}"
    seed = int(redis_cluster.rsplit(":", 1)[1])
    try:
        async with open_session_store(url) as store, open_session_store(url) as writer:
            first = await writer.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id="moving")
            )
            reader = asyncio.create_task(
                store.get_events("moving", after=1, wait_timeout_ms=60_000)
            )
            channel = store.keys.channel("moving")
            slot = key_slot(channel.encode())
            nodes = [line.split() for line in _cli(seed, "cluster", "nodes").splitlines()]
            masters = {
                n[0]: int(n[1].split(":")[1].split("@")[0]) for n in nodes if "master" in n[2]
            }
            src = store._r.get_node_from_key(channel).port
            owner = _cli(src, "cluster", "myid")
            dst_id, dst = next((i, p) for i, p in masters.items() if i != owner)
            while int(_cli(src, "pubsub", "shardnumsub", channel).split()[-1]) == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # until the reader's subscription is live
            _cli(dst, "cluster", "setslot", str(slot), "importing", owner)
            _cli(src, "cluster", "setslot", str(slot), "migrating", dst_id)
            keys = _cli(src, "cluster", "getkeysinslot", str(slot), "1000").split()
            if keys:
                _cli(src, "migrate", "127.0.0.1", str(dst), "", "0", "5000", "keys", *keys)
            for port in masters.values():
                _cli(port, "cluster", "setslot", str(slot), "node", dst_id)
            later = await writer.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id="moving")
            )
            assert later.sequence_number == (first.sequence_number or 0) + 1 == 2
            assert await asyncio.wait_for(reader, 30) == [later]
    finally:
        await _drop_prefix(redis_cluster, unique_name)


@pytest.mark.parametrize("mode", ["single", "cluster"])
async def test_many_operations_and_sessions_with_few_connections(
    request: pytest.FixtureRequest, unique_name: str, mode: str
) -> None:
    """More concurrent operations, and batches naming more sessions, than connections: they
    queue instead of failing."""
    base = SINGLE if mode == "single" else request.getfixturevalue("redis_cluster")
    try:
        async with open_session_store(f"{base}?prefix={unique_name}&max_connections=2") as store:
            batch = [Event(type=EventType.MESSAGE_SENT, session_id=f"s{i}") for i in range(300)]
            out = await store.append_events(batch)
            assert [e.sequence_number for e in out] == [1] * 300
            more = await asyncio.gather(
                *(
                    store.append_event_with_sequence(ev.replace(id=f"x{i}"))
                    for i, ev in enumerate(batch)
                )
            )
            assert [e.sequence_number for e in more] == [2] * 300
    finally:
        await _drop_prefix(base, unique_name)


# ---------------------------------------------------------------- dangling pointers (issue 12.1)


@pytest.mark.timeout(60)
async def test_a_dangling_id_pointer_is_repaired_not_spun_on(unique_name: str) -> None:
    """The global id index may name a session that no longer holds the id (an evicting
    policy, a manual delete, a partial restore): the append stores the event where it
    belongs, repairs the pointer, and returns; it used to retry without end."""
    url = f"{SINGLE}?prefix={unique_name}"
    try:
        async with open_session_store(url) as store:
            assert isinstance(store, RedisSessionStore)
            await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="ghost"))
            eidx = store.keys.event_index
            # e1 -> a session not in the call, e2 -> one in the same batch, e3 -> its own
            await store.client.hset(eidx, mapping={"e1": "ghost", "e2": "s2", "e3": "s1"})
            batch = [
                Event(type=EventType.MESSAGE_SENT, session_id="s1", id="e1"),
                Event(type=EventType.MESSAGE_SENT, session_id="s2", id="x"),
                Event(type=EventType.MESSAGE_SENT, session_id="s1", id="e2"),
                Event(type=EventType.MESSAGE_SENT, session_id="s1", id="e3"),
            ]
            async with asyncio.timeout(10):
                got = await store.append_events(batch)
                again = await store.append_events(batch)  # now an idempotent no-op
            assert [(e.id, e.session_id, e.sequence_number) for e in got] == [
                ("e1", "s1", 1),
                ("x", "s2", 1),
                ("e2", "s1", 2),
                ("e3", "s1", 3),
            ]
            assert again == got
            pointers = await store.client.hmget(eidx, ["e1", "e2", "e3", "x"])
            assert pointers == ["s1\x001", "s1\x002", "s1\x003", "s2\x001"]  # session, seq
            assert [e.id for e in await store.get_events("s1")] == ["e1", "e2", "e3"]
            assert await store.get_latest_sequence("ghost") == 1
    finally:
        await _drop_prefix(SINGLE, unique_name)


# ------------------------------------------------- the layout before issue 13 (single node)


def _mk(sid: str, i: int) -> Event:
    return Event(type=EventType.MESSAGE_SENT, session_id=sid, id=f"{sid}-{i}")


async def _to_layout_before_issue_13(store: RedisSessionStore, sids: list[str]) -> None:
    """Rewrite what the current code wrote into the layout of the code before issue 13: the
    global id index named the session alone (`<session>`), and every session kept an ids hash
    (event id -> seq). Everything else was the same, so this is exactly what that code left;
    built from the documented layout rather than from old scripts out of git history."""
    client = store.client
    eid = store.keys.event_index
    for sid in sids:
        rows = await client.hgetall(store.keys.session(sid)[1])
        ids = {r.split("\0", 1)[0]: seq for seq, r in rows.items()}
        for event_id in ids:
            assert await client.hget(eid, event_id) == f"{sid}\0{ids[event_id]}"
            await client.hset(eid, event_id, sid)
        await client.hset(store.keys.session(sid)[2], mapping=ids)


async def test_a_prefix_written_before_issue_13_is_read_and_kept(
    unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 dropped the per-session ids hash on a single node (the id index says
    `<session>\0<seq>` instead). Entries of the old form (`<session>`, the number in the
    session's ids hash) still count: duplicates are found, new events are numbered on, and
    prune and delete clean both forms, with no migration step."""
    monkeypatch.setattr("agent_session_store.redis.single.GC_BATCH", 3)
    url = f"{SINGLE}?prefix={unique_name}"
    try:
        async with open_session_store(url) as store:
            assert isinstance(store, RedisSessionStore)
            old_a = await store.append_events([_mk("a", i) for i in range(6)])
            await store.append_events([_mk("b", i) for i in range(3)])
            await _to_layout_before_issue_13(store, ["a", "b"])
            eid = store.keys.event_index
            assert await store.client.hget(eid, "a-0") == "a"
            assert await store.get_events("a") == old_a
            # duplicates, in the session and in another one, find the stored events
            assert await store.append_events([_mk("a", 1), _mk("a", 6)]) == [
                old_a[1],
                (await store.get_events("a", after=6))[0],
            ]
            assert (
                await store.append_event_with_sequence(_mk("a", 2).replace(session_id="b"))
                == old_a[2]
            )
            assert await store.get_latest_sequence("a") == 7
            assert await store.get_latest_sequence("b") == 3
            # an import naming an old id at another number is refused
            again = Event(type=EventType.MESSAGE_SENT, session_id="b", id="b-0", sequence_number=2)
            with pytest.raises(StoreError) as info:
                await store.import_session(
                    SessionExport(Session(id="b", agent_id="x"), [], [again], 3)
                )
            assert info.value.code == "sequence_conflict"
            # prune drops old-form pointers of the pruned rows
            await store.save_session(Session(id="a", agent_id="x"))
            assert (
                await store.prune_session_events("a", RetentionPolicy(max_events_per_session=3))
                == 4
            )
            assert [await store.client.hget(eid, f"a-{i}") for i in range(7)] == [
                None,
                None,
                None,
                None,
                "a",
                "a",
                "a\x007",
            ]
            assert (await store.append_event_with_sequence(_mk("a", 0))).sequence_number == 8
            # delete: a session of one batch here (b), a larger one through the clean-up (a)
            await store.delete_session("b")
            await store.delete_session("a")
            assert await store.client.hgetall(eid) == {}
            assert await store.client.exists(store.keys.gc) == 0
            assert not [k async for k in store.client.scan_iter(match=f"{unique_name}:*")]
    finally:
        await _drop_prefix(SINGLE, unique_name)


async def test_a_clean_up_left_by_the_code_before_issue_13_is_finished(unique_name: str) -> None:
    """That code's interrupted delete left the session's ids hash as the garbage key (id ->
    seq, where the current code leaves its ev hash): the next delete finishes it."""
    url = f"{SINGLE}?prefix={unique_name}"
    try:
        async with open_session_store(url) as store:
            assert isinstance(store, RedisSessionStore)
            await store.append_events(
                [Event(type=EventType.MESSAGE_SENT, session_id="a", id=f"a{i}") for i in range(9)]
            )
            await _to_layout_before_issue_13(store, ["a"])
            keys = store.keys
            garbage = keys.garbage("a")
            await store.client.rename(keys.session("a")[2], garbage)  # what its delete.lua did
            await store.client.hset(keys.gc, garbage, "a")
            await store.client.unlink(*keys.session("a"))
            await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="c", id="a3"))
            await store.delete_session("other")
            assert await store.client.hgetall(keys.event_index) == {"a3": "c\x001"}
            assert await store.client.exists(keys.gc, garbage) == 0
    finally:
        await _drop_prefix(SINGLE, unique_name)


# ------------------------------------------------- the type index (issue 13: packed numbers)

# a custom type, one never pruned, one pruned first
_TYPES = ("app.t0", "error_occurred", "message_streamed")


def _typed(sid: str, i: int, seq: int | None = None) -> Event:
    """Types cycling over three values (unevenly), a run per 40 events."""
    return Event(
        type=to_event_type(_TYPES[i % 3] if i % 7 else _TYPES[0]),
        session_id=sid,
        id=f"{sid}-{i}",
        run_id=f"r{i // 40}",
        sequence_number=seq,
    )


async def _reads_agree_with_a_filter(store: RedisSessionStore, sid: str) -> int:
    """Every type (with bounds, limits, both orders, and with a run) read through the index
    is exactly the filter of the whole log; returns the log's length."""
    every = await store.get_events(sid)
    mid = every[len(every) // 2].sequence_number
    assert mid is not None
    for t in _TYPES:
        want = [e for e in every if e.type == t]
        assert await store.get_events(sid, type=t) == want
        assert await store.get_events(sid, type=t, order="desc", limit=7) == want[::-1][:7]
        above = [e for e in want if (e.sequence_number or 0) > mid]
        assert await store.get_events(sid, type=t, after=mid, limit=5) == above[:5]
        below = [e for e in want[::-1] if (e.sequence_number or 0) < mid]
        assert await store.get_events(sid, type=t, before=mid, order="desc", limit=5) == below[:5]
        inside = [e for e in want if mid - 50 < (e.sequence_number or 0) < mid + 50]
        assert await store.get_events(sid, type=t, after=mid - 50, before=mid + 50) == inside
        for run in ("r0", "r3", "r9"):
            of_run = [e for e in want if e.run_id == run]
            assert await store.get_events(sid, type=t, run_id=run) == of_run
            assert await store.get_events(sid, type=t, run_id=run, order="desc") == of_run[::-1]
    assert await store.get_events(sid, type="app.none") == []
    return len(every)


async def test_the_type_index_answers_what_a_filter_of_the_log_answers(
    rstore: RedisSessionStore,
) -> None:
    """Types live in packed arrays of numbers (key t): appends across chunk boundaries,
    imports below the end (merged in), prune (the arrays' heads dropped) and delete."""
    sid = "s"
    # an import of the even numbers, then one of the odd numbers (each below the end)
    evens = [_typed(sid, i, 2 * i + 2) for i in range(300)]
    odds = [_typed(sid, 1000 + i, 2 * i + 1) for i in range(300)]
    await rstore.import_session(SessionExport(Session(id=sid, agent_id="x"), [], evens, 600))
    await rstore.import_records(
        SessionExport(Session(id=sid, agent_id="x"), [], odds, 600).records(), chunk_size=70
    )
    await rstore.append_events([_typed(sid, 2000 + i) for i in range(200)])
    assert await rstore.get_latest_sequence(sid) == 800
    assert await _reads_agree_with_a_filter(rstore, sid) == 800
    t_key = rstore.keys.session(sid)[9]
    chunks = len(await rstore.client.hkeys(t_key))
    policy = RetentionPolicy(max_events_per_session=300)
    assert await rstore.prune_session_events(sid, policy) == 500
    assert await _reads_agree_with_a_filter(rstore, sid) == 300
    assert len(await rstore.client.hkeys(t_key)) < chunks  # the heads' chunks went
    # a pruned event imported again at its number lands below its type's live entries
    again = SessionExport(Session(id=sid, agent_id="x"), [], [evens[0]], 800)
    assert (await rstore.import_session(again)).events_imported == 1
    assert await _reads_agree_with_a_filter(rstore, sid) == 301
    # a type pruned away entirely leaves nothing behind; its next event starts afresh
    kept = len(await rstore.get_events(sid, type="error_occurred"))
    policy = RetentionPolicy(max_events_per_session=kept)
    assert await rstore.prune_session_events(sid, policy) == 301 - kept
    fields = await rstore.client.hkeys(t_key)
    assert fields and all(f.startswith("error_occurred") for f in fields)
    assert await rstore.client.zrange(rstore.keys.session(sid)[3], "[T", "(U", bylex=True) == [
        "Terror_occurred"
    ]
    await rstore.append_event(_typed(sid, 3000))  # type app.t0
    assert [e.sequence_number for e in await rstore.get_events(sid, type="app.t0")] == [801]
    await rstore.delete_session(sid)
    keys = rstore.keys.session(sid)
    assert await rstore.client.exists(*keys[:6], *keys[7:]) == 0  # (a cluster's del: a marker)


async def _types_to_layout_before(store: RedisSessionStore, sid: str) -> None:
    """Rewrite a session into the layout of the code before the type index: every event a
    member `t<type>\0<seq:012>` of x, no key t, no `T<type>` members (docs/redis.md)."""
    client = store.client
    keys = store.keys.session(sid)
    rows = await client.hgetall(keys[1])
    members = {f"t{r.split(chr(0))[2]}\0{int(seq):012d}": 0 for seq, r in rows.items()}
    await client.zadd(keys[3], members)
    for t in _TYPES:
        await client.zrem(keys[3], f"T{t}")
    await client.delete(keys[9])


async def test_a_session_written_before_the_type_index_is_read_and_kept(
    rstore: RedisSessionStore,
) -> None:
    """A session whose types are members of x (the release before) keeps that form: its
    reads by type use x, new events add members there, prune and delete remove them."""
    sid = "old"
    await rstore.save_session(Session(id=sid, agent_id="x"))
    await rstore.append_events([_typed(sid, i) for i in range(400)])
    await _types_to_layout_before(rstore, sid)
    keys = rstore.keys.session(sid)
    assert await _reads_agree_with_a_filter(rstore, sid) == 400
    await rstore.append_events([_typed(sid, 400 + i) for i in range(10)])
    assert await rstore.client.exists(keys[9]) == 0
    assert await rstore.client.zlexcount(keys[3], "[t", "(u") == 410
    assert await _reads_agree_with_a_filter(rstore, sid) == 410
    keep = 200  # the oldest message_streamed go first, then app.t0
    policy = RetentionPolicy(max_events_per_session=keep)
    assert await rstore.prune_session_events(sid, policy) == 210
    assert await rstore.client.zlexcount(keys[3], "[t", "(u") == keep
    assert await _reads_agree_with_a_filter(rstore, sid) == keep
    await rstore.delete_session(sid)
    assert await rstore.client.exists(*keys[:6], *keys[7:]) == 0


# ---------------------------------------------------------------- a full server (issue 12.12)


async def test_a_full_server_can_still_be_read_and_emptied(tmp_path: Path) -> None:
    """At ``maxmemory`` with ``noeviction`` appends fail cleanly, while reads, lists and
    ``delete_session`` still work (read scripts are ``no-writes``, delete scripts
    ``allow-oom``), so a full store can be read and emptied."""
    server = _Server(
        tmp_path / "full", _free_port(), "--maxmemory", "3mb", "--maxmemory-policy", "noeviction"
    )
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0?prefix=oom"
        async with open_session_store(url) as store:
            await store.save_session(Session(id="s", agent_id="a"))
            await store.save_run(Run(id="r", session_id="s"))
            stored: list[Event] = []
            big = [
                Event(type=EventType.MESSAGE_SENT, session_id="s", data={"x": "y" * 8000})
                for _ in range(4)
            ]
            err: StoreError | None = None
            for _ in range(10_000):  # far more than 3 MB
                try:
                    stored += await store.append_events([e.replace(id=new_id("evt_")) for e in big])
                except StoreError as exc:
                    err = exc
                    break
            assert err is not None
            assert err.code == "storage_error" and "OutOfMemory" in err.message
            assert await store.get_latest_sequence("s") == len(stored) > 0
            assert await store.get_events("s") == stored
            assert await store.get_events("s", order="desc", limit=2) == stored[:-3:-1]
            assert await store.get_events("s", type="message_sent", limit=1) == stored[:1]
            assert [x.id for x in await store.list_sessions()] == ["s"]
            assert (await store.get_session("s")).id == "s"
            assert [r.id for r in await store.list_runs("s")] == ["r"]
            assert await store.get_visible_events("s", limit=1) == stored[-1:]
            await store.delete_session("s")
            assert await store.get_events("s") == []
            assert await store.list_sessions() == []
            again = await store.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id="s")
            )
            assert again.sequence_number == 1
    finally:
        server.stop()


# ---------------------------------------------------------------- bounded reads (issue 13)


async def test_reads_page_inside_the_store_and_agree_with_one_big_script(
    rstore: RedisSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a budget of a few candidates per script call, every query gives the same answer
    as with the default budget: continuation after the budget runs out loses nothing."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events = await rstore.append_events(
        [
            Event(
                type=EventType.TOOL_CALL_STARTED if i % 3 == 0 else EventType.MESSAGE_SENT,
                session_id="s",
                run_id="r1" if i % 2 else None,
                timestamp=t0 + timedelta(seconds=i % 17),
            )
            for i in range(60)
        ]
    )
    # a sparse session (an import with gaps) takes the other path
    sparse = [
        Event(id=f"g{n}", type=EventType.MESSAGE_SENT, session_id="g", sequence_number=n)
        for n in (2, 3, 7, 20, 21, 40)
    ]
    await rstore.import_session(SessionExport(Session(id="g", agent_id="a"), [], sparse, 45))
    queries: list[dict[str, Any]] = [
        {},
        {"limit": 7},
        {"after": 5, "before": 50, "limit": 9},
        {"run_id": "r1", "limit": 5},
        {"type": "tool_call_started"},
        {"type": "tool_call_started", "run_id": "r1", "limit": 3},
        {"since": t0 + timedelta(seconds=15), "limit": 4},
        {"since": t0 + timedelta(seconds=16)},
    ]
    expected: dict[tuple[str, Literal["asc", "desc"], int], list[Event]] = {}
    orders: tuple[Literal["asc", "desc"], ...] = ("asc", "desc")
    for sid in ("s", "g"):
        for order in orders:
            for n, q in enumerate(queries):
                expected[sid, order, n] = await rstore.get_events(sid, order=order, **q)
    assert (
        expected["s", "asc", 0] == events
        and expected["g", "desc", 0] == (await rstore.get_events("g"))[::-1]
    )
    assert [e.sequence_number for e in expected["g", "asc", 0]] == [2, 3, 7, 20, 21, 40]
    monkeypatch.setattr("agent_session_store.redis.store.READ_BUDGET", 3)
    calls = _script_calls(rstore, monkeypatch)
    for (sid, order, n), want in expected.items():
        assert await rstore.get_events(sid, order=order, **queries[n]) == want, (sid, order, n)
    assert calls.count("read") > 4 * len(expected)  # the small budget did split the reads


@pytest.mark.parametrize("year", [1700, 2300, 9999])
async def test_since_compares_microseconds_exactly_beyond_doubles(
    rstore: RedisSessionStore, year: int
) -> None:
    """Timestamps in µs exceed 2^53 before ~1684 and after ~2255 (issue 12.5): ``since``
    still tells neighbouring microseconds apart."""
    t = datetime(year, 6, 1, 12, 0, 0, 3, tzinfo=UTC)
    events = await rstore.append_events(
        [
            Event(
                type=EventType.MESSAGE_SENT, session_id="s", timestamp=t + timedelta(microseconds=k)
            )
            for k in range(4)
        ]
    )
    for k in range(4):
        since = t + timedelta(microseconds=k)
        assert await rstore.get_events("s", since=since) == events[k:], k
        assert await rstore.get_events("s", since=since, order="desc") == events[k:][::-1], k


async def test_delete_work_is_batched_and_an_interrupted_clean_up_is_finished(
    rstore: RedisSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """delete_session no longer walks the whole session in one script (issue 13): one
    constant step, then the id index (single node) or the claims (cluster) in batches."""
    monkeypatch.setattr("agent_session_store.redis.single.GC_BATCH", 100)
    monkeypatch.setattr("agent_session_store.redis.cluster.GC_BATCH", 100)
    for sid in ("a", "big"):
        await rstore.append_events(
            [
                Event(type=EventType.MESSAGE_SENT, session_id=sid, id=f"{sid}{i}")
                for i in range(1500)
            ]
        )
    real_eval = rstore.eval
    calls = _script_calls(rstore, monkeypatch)
    keys = rstore.keys
    if not rstore.cluster:
        # a delete whose client died after its first step: the ids' pointers dangle ...
        ks = [*keys.session("a"), keys.event_index, keys.run_index, *keys.list_index]
        ks += [keys.gc, keys.garbage("a"), keys.touched_index]
        assert await real_eval("delete", ks, ["a"]) == 1500
        assert await rstore.get_events("a") == []
        moved = await rstore.append_event_with_sequence(
            Event(type=EventType.MESSAGE_SENT, session_id="b", id="a7")
        )
        assert (moved.session_id, moved.sequence_number) == ("b", 1)  # ... and mean "free"
    await rstore.delete_session("big")
    assert await rstore.get_events("big") == []
    if rstore.cluster:
        claims = [k for k in await _all_keys(rstore) if k.startswith(f"{rstore.prefix}:e:")]
        assert len(claims) == 1500  # only session a's
    else:
        assert calls.count("gc") >= 30  # both clean-ups, 100 ids per call
        pointers = await rstore.client.hgetall(keys.event_index)
        assert pointers == {"a7": "b\x001"}
        assert await rstore.client.exists(keys.gc) == 0
        assert not [k for k in await _all_keys(rstore) if ":gc:" in k]
    again = await rstore.append_event_with_sequence(
        Event(type=EventType.ERROR_OCCURRED, session_id="c", id="big5")
    )
    assert (again.session_id, again.sequence_number) == ("c", 1)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_since_skips_older_blocks_through_the_zone_map(
    rstore: RedisSessionStore, monkeypatch: pytest.MonkeyPatch, order: Literal["asc", "desc"]
) -> None:
    """``since`` over a long log reads only the blocks that can hold newer events: with a
    budget of 100 candidates per call, 5,000 events cost about 20 calls, not 50."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [t0 + timedelta(seconds=i) for i in range(5000)]
    stamps[1500] = t0 + timedelta(days=1)  # one late event in an early block
    events = await rstore.append_events(
        [Event(type=EventType.MESSAGE_SENT, session_id="s", timestamp=t) for t in stamps]
    )
    since = t0 + timedelta(seconds=4995)
    want = [e for e in events if e.timestamp >= since]
    monkeypatch.setattr("agent_session_store.redis.store.READ_BUDGET", 100)
    calls = _script_calls(rstore, monkeypatch)
    got = await rstore.get_events("s", since=since, order=order)
    assert got == (want if order == "asc" else want[::-1])
    assert [e.sequence_number for e in want] == [1501, 4996, 4997, 4998, 4999, 5000]
    assert calls.count("read") <= 25  # two blocks of 1,024 read row by row, the other three skipped
    calls.clear()
    assert await rstore.get_events("s", since=since, order=order, limit=2) == got[:2]


# ---------------------------------------------------------------- v2, Redis-specific


async def test_a_refused_conditional_append_or_import_leaves_no_claim(
    rstore: RedisSessionStore,
) -> None:
    """Cluster: ids are claimed before the counter check; a refused call gives its claims
    back, so it consumed nothing (on a single node there are no claims to leave)."""
    await rstore.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s", id="e0"))
    before = sorted(await _all_keys(rstore))
    with pytest.raises(StoreError) as info:
        await rstore.append_events(
            [Event(type=EventType.MESSAGE_SENT, session_id="s", id=f"n{i}") for i in range(3)],
            expected_sequence=0,
        )
    assert info.value.code == "sequence_conflict"
    clash = SessionExport(
        Session(id="s", agent_id="a"),
        [],
        [
            Event(id="m1", type=EventType.MESSAGE_SENT, session_id="s", sequence_number=5),
            Event(id="e0", type=EventType.MESSAGE_SENT, session_id="s", sequence_number=6),
        ],
        6,
    )
    with pytest.raises(StoreError) as info:
        await rstore.import_session(clash)
    assert info.value.code == "sequence_conflict"
    assert sorted(await _all_keys(rstore)) == before
    # the refused ids are free: a plain append of one of them stores it now
    got = await rstore.append_event_with_sequence(
        Event(type=EventType.MESSAGE_SENT, session_id="t", id="n1")
    )
    assert (got.session_id, got.sequence_number) == ("t", 1)


async def test_sequence_numbers_beyond_the_index_width_are_refused(
    rstore: RedisSessionStore,
) -> None:
    big = 10**12
    export = SessionExport(
        Session(id="s", agent_id="a"),
        [],
        [Event(id="x", type=EventType.MESSAGE_SENT, session_id="s", sequence_number=big)],
        big,
    )
    with pytest.raises(StoreError) as info:
        await rstore.import_session(export)
    assert info.value.code == "validation_error"
    ok = SessionExport(export.session, [], [export.events[0].replace(sequence_number=big - 1)], 0)
    ok = SessionExport(export.session, [], ok.events, big - 1)
    assert (await rstore.import_session(ok)).events_imported == 1
    assert [e.sequence_number for e in await rstore.get_events("s", order="desc")] == [big - 1]
    assert await rstore.get_events("s", after=big - 2) == await rstore.get_events("s")


async def test_a_write_to_a_session_fenced_for_ever_gives_up_by_its_deadline(
    redis_cluster: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every retry loop is bounded (issue 12.1): a fence that never lifts (here without a
    TTL) makes the write fail with storage_error once the retry deadline has passed."""
    from agent_session_store.retry import RetryPolicy

    policy = RetryPolicy(timeout=0.5, first_delay=0.001, max_delay=0.05)
    monkeypatch.setattr("agent_session_store.redis.cluster.WRITE_RETRY", policy)
    url = f"{redis_cluster}?prefix={unique_name}"
    try:
        async with open_session_store(url) as store:
            assert isinstance(store, RedisSessionStore)
            await store.client.set(f"{store.keys.tag('s')}:del", "busy")
            started = time.monotonic()
            with pytest.raises(StoreError) as info:
                await asyncio.wait_for(
                    store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s")), 10
                )
            assert info.value.code == "storage_connection_failed"  # a lock timeout: retryable
            assert "gave up" in info.value.message
            assert 0.4 < time.monotonic() - started < 5
            await store.client.delete(f"{store.keys.tag('s')}:del")
            assert (
                await store.append_event_with_sequence(
                    Event(type=EventType.MESSAGE_SENT, session_id="s")
                )
            ).sequence_number == 1
    finally:
        await _drop_prefix(redis_cluster, unique_name)


# ---------------------------------------------------------------- query and retention


async def test_pruned_ids_leave_the_id_index_and_the_claims(rstore: RedisSessionStore) -> None:
    from agent_session_store.retention import RetentionPolicy

    await rstore.save_session(Session(id="p", agent_id="a"))
    await rstore.append_events(
        [Event(type=EventType.MESSAGE_SENT, session_id="p", id=f"e{i}") for i in range(5)]
    )
    pruned = await rstore.prune_session_events("p", RetentionPolicy(max_events_per_session=2))
    assert pruned == 3
    r = rstore.client
    for i in range(5):
        if rstore.cluster:
            held = await r.get(rstore.keys.claim(f"e{i}"))
        else:
            held = await r.hget(rstore.keys.event_index, f"e{i}")
        assert (held is None) == (i < 3), i
    assert await r.hget(rstore.keys.session("p")[9], "message_sent") == "3 5"  # type index
    assert await rstore.get_latest_sequence("p") == 5
    assert await rstore.health_check() == []


async def test_a_soft_delete_rechecks_a_session_that_moved(rstore: RedisSessionStore) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    await rstore.save_session(Session(id="idle", agent_id="a", updated_at=old))
    cutoff = int(datetime(2021, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    queries = rstore._queries
    seen = await queries._records_of(["idle"])
    assert [r.row.id for r in seen] == ["idle"]
    await rstore.append_event(Event(type=EventType.MESSAGE_SENT, session_id="idle"))  # activity
    assert await queries._mark(seen[0], cutoff, (), (), datetime.now(UTC)) == 0
    assert (await rstore.get_session("idle")).deleted_at is None
    # not moved: marked, and updated_at stays what activity made it
    touched = (await rstore.get_session("idle")).updated_at
    now = datetime.now(UTC)
    seen = await queries._records_of(["idle"])
    assert await queries._mark(seen[0], now_us(now) + 1, (), (), now) == 1
    marked = await rstore.get_session("idle")
    assert (marked.deleted_at, marked.updated_at) == (now, touched)


def now_us(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


async def test_health_check_finds_counters_and_index_entries_out_of_step(
    rstore: RedisSessionStore,
) -> None:
    await rstore.save_session(Session(id="h", agent_id="a"))
    await rstore.append_events([Event(type=EventType.MESSAGE_SENT, session_id="h")] * 1)
    await rstore.append_event(Event(type=EventType.MESSAGE_SENT, session_id="h"))
    assert await rstore.health_check() == []
    r = rstore.client
    await r.set(rstore.keys.session("h")[0], "1")
    problems = await rstore.health_check()
    assert len(problems) == 1 and "counter 1 is below event 2" in problems[0]
    await r.set(rstore.keys.session("h")[0], "2")
    await r.hdel(rstore.keys.list_index[5], "h")
    problems = await rstore.health_check()
    assert len(problems) == 1 and "missing from the list index" in problems[0]


# ---------------------------------------------------------------- driver faults (issue item 9)


def test_one_classification_of_driver_errors() -> None:
    """faults.classify, used by the single node and the cluster: redis-py's own
    AttributeError from a connection dropped under a call is a lost connection, the same
    error from this package is a bug (storage_error); cluster refusals are retryable."""
    import redis.asyncio.connection as rconn
    import redis.exceptions as rexc

    from agent_session_store.redis.faults import classify

    async def write_on_dropped() -> None:
        # what a concurrent disconnect leaves: a connection whose writer is gone
        host, port = redis_host_port()
        conn = redis.asyncio.Connection(host=host, port=port)
        await conn._send_packed_command([b"PING\r\n"])

    # redis-py 8.1 trips over the missing writer (AttributeError), 8.2 checks it first
    with pytest.raises((AttributeError, rexc.ConnectionError)) as dropped:
        asyncio.run(write_on_dropped())
    assert classify(dropped.value, "append_event").code == "storage_connection_failed"
    assert classify(dropped.value, "x").details["reason"] == "connection_lost"
    # the AttributeError as the driver raises it, under any release: its innermost frame
    # is in redis-py's own files (8.2 still re-raises one from a transport not closing)
    with pytest.raises(AttributeError) as driver:
        exec(compile("None.writelines()", rconn.__file__, "exec"))
    assert classify(driver.value, "append_event").code == "storage_connection_failed"
    assert classify(driver.value, "x").details["reason"] == "connection_lost"
    ours: Any = None
    with pytest.raises(AttributeError) as bug:
        ours.writelines()
    assert classify(bug.value, "append_event").code == "storage_error"
    retryable: list[Exception] = [
        rexc.ClusterError("TTL exhausted."),
        rexc.TryAgainError("Multiple keys request during rehashing of slot"),
        rexc.MovedError("3999 127.0.0.1:6381"),
        rexc.AskError("3999 127.0.0.1:6381"),
        rexc.ClusterDownError("The cluster is down"),
        rexc.MasterDownError("MASTERDOWN Link with MASTER is down"),
        rexc.BusyLoadingError("Redis is loading the dataset in memory"),
        rexc.ResponseError("BUSY Redis is busy running a script."),
        rexc.ReadOnlyError("You can't write against a read only replica."),
        rexc.ConnectionError("Connection closed by server."),
        rexc.TimeoutError("Timeout reading from socket"),
        TimeoutError(),
        ConnectionResetError(104, "Connection reset by peer"),
    ]
    for exc in retryable:
        assert classify(exc, "op").code == "storage_connection_failed", exc
    final: list[Exception] = [
        rexc.ResponseError("ERR Error running script"),
        rexc.OutOfMemoryError("OOM command not allowed"),
        rexc.AuthenticationError("invalid username-password pair"),
        rexc.DataError("Invalid input"),
    ]
    for exc in final:
        assert classify(exc, "op").code == "storage_error", exc


async def test_wrong_credentials_are_not_retryable() -> None:
    """A refused password is no outage: storage_error, and the password is not shown."""
    host, port = redis_host_port()
    store = open_session_store(f"redis://nobody:hunter2secret@{host}:{port}/0?prefix=x")
    with pytest.raises(StoreError) as info:
        await store.get_session("s")
    assert info.value.code == "storage_error"
    assert "hunter2secret" not in str(info.value)
    await store.close()


_KINDS = ("append", "read", "wait", "list", "delete")


async def _load_until_each_kind_fails(
    store: RedisSessionStore, sids: list[str], deadline: float
) -> dict[str, list[BaseException]]:
    """Every kind of call, one loop per kind and session, until each kind has failed (or
    the deadline); returns the exceptions per kind."""
    failed: dict[str, list[BaseException]] = {k: [] for k in _KINDS}

    async def one(kind: str, sid: str) -> None:
        while time.monotonic() < deadline and not all(failed.values()):
            try:
                if kind == "append":
                    await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id=sid))
                elif kind == "read":
                    await store.get_events(sid)
                elif kind == "wait":
                    await store.get_events(sid, after=10**9, wait_timeout_ms=300)
                elif kind == "list":
                    await store.list_sessions(limit=5)
                else:
                    await store.delete_session(sid)
            except Exception as exc:
                failed[kind].append(exc)
                await asyncio.sleep(0.01)  # pacing a failing loop, not a wait for an event

    # a call hanging on the paused node (it once did: a long-poll's subscribe) fails here
    await asyncio.wait_for(asyncio.gather(*(one(k, s) for k in _KINDS for s in sids)), 60)
    return failed


def _codes(failed: dict[str, list[BaseException]]) -> set[str]:
    return {
        e.code if isinstance(e, StoreError) else f"raw {type(e).__name__}: {e}"
        for errors in failed.values()
        for e in errors
    }


async def _wait_healthy(store: RedisSessionStore, sids: list[str], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            for sid in sids:
                await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id=sid))
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # polling the cluster's recovery, with a deadline


@pytest.mark.timeout(180)
async def test_cluster_node_stopped_then_killed_gives_retryable_codes(
    own_cluster: list[_Server],
) -> None:
    """A master of a throw-away cluster is paused (SIGSTOP: a hung server), resumed, then
    killed (SIGKILL) under concurrent calls of every kind: each failure is
    storage_connection_failed, never a raw driver error nor storage_error."""
    seed = own_cluster[0].port
    url = f"redis+cluster://127.0.0.1:{seed}?prefix=k&socket_timeout=1&connect_timeout=1"
    async with open_session_store(url) as store:
        sids = [f"s{i}" for i in range(6)]  # spread over the three masters
        for sid in sids:
            await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id=sid))
        port = store.client.get_node_from_key(store.keys.session(sids[0])[0]).port
        victim = next(s for s in own_cluster if s.port == port)
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGSTOP)
        paused = await _load_until_each_kind_fails(store, sids, time.monotonic() + 30)
        victim.proc.send_signal(signal.SIGCONT)
        assert all(paused.values()), {k: len(v) for k, v in paused.items()}
        assert _codes(paused) == {"storage_connection_failed"}
        await _wait_healthy(store, sids, 60)  # the store recovers by itself
        victim.proc.kill()
        victim.proc.wait()
        killed = await _load_until_each_kind_fails(store, sids, time.monotonic() + 30)
        assert all(killed.values()), {k: len(v) for k, v in killed.items()}
        assert _codes(killed) == {"storage_connection_failed"}
        for errors in (*paused.values(), *killed.values()):
            assert all(e.__cause__ is not None for e in errors)


# ---------------------------------------------------------------- resharding (issue item 10)

_WRITER = """
import asyncio, sys, time
from pathlib import Path
from agent_session_store import urls
from agent_session_store.errors import StoreError
from agent_session_store.models import Event, EventType

async def main(url, sid, out):
    acked, errors, stop = out / "acked", out / "errors", out / "stop"
    async with urls.open_session_store(url) as store:
        deadline = time.monotonic() + 120
        with acked.open("a") as a, errors.open("a") as e:
            while not stop.exists() and time.monotonic() < deadline:
                ev = Event(type=EventType.MESSAGE_SENT, session_id=sid, data={"w": "process"})
                for _ in range(100):  # a retryable failure: the same event (same id) again
                    try:
                        await store.append_event(ev)
                    except StoreError as err:
                        e.write(err.code + "\\n"); e.flush()
                        if err.code != "storage_connection_failed":
                            return
                        continue
                    a.write(ev.id + "\\n"); a.flush()
                    break

asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
"""


def _errorstat(port: int, name: str) -> int:
    for line in _cli(port, "info", "errorstats").splitlines():
        if line.startswith(f"errorstat_{name}:count="):
            return int(line.split("=")[1])
    return 0


def _move_keys(slot: int, src: int, dst: int) -> None:
    """MIGRATE every key of ``slot`` from ``src`` to ``dst``, 100 at a time."""
    while keys := _cli(src, "cluster", "getkeysinslot", str(slot), "100").split():
        _cli(src, "migrate", "127.0.0.1", str(dst), "", "0", "5000", "keys", *keys)


def _finish_slot_move(slot: int, src: int, dst: int, dst_id: str, masters: Iterable[int]) -> None:
    """The end of a slot move: no key left behind, every master told the new owner."""
    _move_keys(slot, src, dst)
    for port in (dst, src, *(p for p in masters if p not in (src, dst))):
        _cli(port, "cluster", "setslot", str(slot), "node", dst_id)


@pytest.mark.timeout(240)
async def test_writes_during_a_real_slot_migration_succeed_exactly_once(
    redis_cluster: str, unique_name: str, tmp_path: Path
) -> None:
    """The slot of a session is migrated (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT
    NODE) while four writers here and one in another process append: the server answers
    TRYAGAIN to the write scripts meanwhile (they name keys that do not exist yet), the
    store tries them again within faults.MOVE_RETRY, so every append succeeds, and the log
    holds every acknowledged event exactly once, numbered without gaps."""
    import os
    import sys

    url = f"{redis_cluster}?prefix={unique_name}"
    seed = int(redis_cluster.rsplit(":", 1)[1])
    sid = "resharded"
    proc: asyncio.subprocess.Process | None = None
    finish: Any = None
    try:
        async with open_session_store(url) as store:
            first = await store.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id=sid)
            )
            slot = key_slot(store.keys.session(sid)[0].encode())
            nodes = [line.split() for line in _cli(seed, "cluster", "nodes").splitlines()]
            masters = {
                n[0]: int(n[1].split(":")[1].split("@")[0]) for n in nodes if "master" in n[2]
            }
            src = store.client.get_node_from_key(store.keys.session(sid)[0]).port
            src_id = _cli(src, "cluster", "myid")
            dst_id, dst = next((i, p) for i, p in masters.items() if i != src_id)

            acked: list[str] = []
            errors: list[StoreError] = []
            stop = asyncio.Event()

            async def writer(n: int) -> None:
                while not stop.is_set():
                    ev = Event(type=EventType.MESSAGE_SENT, session_id=sid, data={"w": n})
                    for _ in range(100):  # a retryable failure: the same event again
                        try:
                            await store.append_event(ev)
                        except StoreError as err:
                            errors.append(err)
                            if err.code != "storage_connection_failed":
                                return
                            continue
                        acked.append(ev.id)
                        break

            env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WRITER, url, sid, str(tmp_path), env=env
            )
            writers = [asyncio.create_task(writer(n)) for n in range(4)]
            other = tmp_path / "acked"

            async def until(what: str, check: Any, within: float = 30) -> None:
                deadline = time.monotonic() + within
                while not check():
                    assert time.monotonic() < deadline, f"timed out waiting for {what}"
                    assert not any(w.done() for w in writers), errors
                    await asyncio.sleep(0.01)  # polling the cluster and the writers

            def other_acked() -> int:
                return len(other.read_text().split()) if other.exists() else 0

            await until("both processes writing", lambda: len(acked) > 20 and other_acked())
            refused = _errorstat(src, "TRYAGAIN") + _errorstat(dst, "TRYAGAIN")

            def tryagain() -> int:
                return _errorstat(src, "TRYAGAIN") + _errorstat(dst, "TRYAGAIN") - refused

            _cli(dst, "cluster", "setslot", str(slot), "importing", src_id)
            _cli(src, "cluster", "setslot", str(slot), "migrating", dst_id)
            finish = (slot, src, dst, dst_id, masters.values())  # even if the test fails
            # a refused script call costs redis-py 16 TRYAGAIN answers: wait for several, so
            # that the writers meet the move (without the retry, some of them fail here)
            await until("writes refused with TRYAGAIN", lambda: tryagain() >= 50)
            _move_keys(slot, src, dst)
            moved = tryagain()
            await until("more TRYAGAIN after the keys moved", lambda: tryagain() >= moved + 50)
            _finish_slot_move(slot, src, dst, dst_id, masters.values())
            finish = None
            done = len(acked), other_acked()
            await until(
                "appends after the move",
                lambda: len(acked) > done[0] + 20 and other_acked() > done[1] + 5,
            )
            stop.set()
            (tmp_path / "stop").touch()
            await asyncio.gather(*writers)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
            assert store.client.get_node_from_key(store.keys.session(sid)[0]).port == dst

            failed = (tmp_path / "errors").read_text().split()
            assert [e.message for e in errors] == [] and failed == []  # no write failed at all
            assert tryagain() >= 10
            stored = await store.get_events(sid)
            ids = [e.id for e in stored]
            assert [e.sequence_number for e in stored] == list(range(1, len(stored) + 1))
            assert len(set(ids)) == len(ids)  # nothing stored twice
            assert set(ids) == {first.id, *acked, *other.read_text().split()}
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        if finish is not None:  # leave the shared test cluster whole
            _finish_slot_move(*finish)
        await _drop_prefix(redis_cluster, unique_name)


# ---------------------------------------------------------------- interrupted deletes (item 17)


@pytest.mark.timeout(120)
async def test_a_cancelled_cluster_delete_holds_writers_off_only_briefly(
    redis_cluster: str, unique_name: str
) -> None:
    """A delete_session cancelled after it fenced the session (as if its client died)
    leaves the session whole, and the next append waits only for the short fence TTL (it
    waited the old 30 s), then succeeds; repeating the delete finishes it."""
    from agent_session_store.redis.limits import BUSY_TTL_MS

    url = f"{redis_cluster}?prefix={unique_name}"
    try:
        async with open_session_store(url) as store:
            sid = "interrupted"
            events = [Event(type=EventType.MESSAGE_SENT, session_id=sid) for _ in range(1500)]
            for i in range(0, len(events), 500):
                await store.append_events(events[i : i + 500])
            fence = f"{store.keys.tag(sid)}:del"
            client = store.client
            real_hscan = client.hscan
            between = asyncio.Event()

            async def stalls_between_steps(*args: Any, **kwargs: Any) -> Any:
                between.set()  # the delete has fenced the session and walks its ids now
                await asyncio.Event().wait()  # its client stops here (then is cancelled)

            client.hscan = stalls_between_steps
            task = asyncio.create_task(store.delete_session(sid))
            await asyncio.wait_for(between.wait(), 30)
            client.hscan = real_hscan
            assert await client.get(fence) == "busy"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert len(await store.get_events(sid)) == 1500  # the delete did not happen
            started = time.monotonic()
            later = await store.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id=sid)
            )
            waited = time.monotonic() - started
            assert later.sequence_number == 1501
            assert waited < BUSY_TTL_MS / 1000 + 3 < 10, waited
            await store.delete_session(sid)
            assert await store.get_events(sid) == []
    finally:
        await _drop_prefix(redis_cluster, unique_name)


async def test_a_cluster_delete_whose_fence_lapsed_deletes_nothing(
    redis_cluster: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete slower than its fence (renewed between steps) may have let writers in: it
    then drops nothing and fails retryably; called again (in time) it deletes."""
    url = f"{redis_cluster}?prefix={unique_name}"
    try:
        async with open_session_store(url) as store:
            sid = "slow"
            await store.append_events(
                [Event(type=EventType.MESSAGE_SENT, session_id=sid) for _ in range(10)]
            )
            real_eval = store.eval

            async def lapses(name: str, keys: Any, args: Any) -> Any:
                if name == "fence":  # the fence expired before the delete renewed it
                    await store.client.delete(keys[0])
                return await real_eval(name, keys, args)

            monkeypatch.setattr(store, "eval", lapses)
            with pytest.raises(StoreError) as info:
                await store.delete_session(sid)
            assert info.value.code == "storage_connection_failed"
            assert len(await store.get_events(sid)) == 10
            monkeypatch.undo()
            await store.delete_session(sid)
            assert await store.get_events(sid) == []
    finally:
        await _drop_prefix(redis_cluster, unique_name)


@pytest.mark.timeout(120)
async def test_single_node_paused_gives_retryable_codes_then_recovers(
    own_server: _Server,
) -> None:
    """The single-node side of item 9: a hung server (SIGSTOP) under every kind of call,
    long-polls included (their subscriber connect once hung for ever), gives
    storage_connection_failed only; resumed, the store works again by itself."""
    url = f"redis://127.0.0.1:{own_server.port}/0?prefix=p&socket_timeout=1&connect_timeout=1"
    async with open_session_store(url) as store:
        sids = ["a", "b"]
        for sid in sids:
            await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id=sid))
        assert own_server.proc is not None
        own_server.proc.send_signal(signal.SIGSTOP)
        try:
            paused = await _load_until_each_kind_fails(store, sids, time.monotonic() + 30)
        finally:
            own_server.proc.send_signal(signal.SIGCONT)
        assert all(paused.values()), {k: len(v) for k, v in paused.items()}
        assert _codes(paused) == {"storage_connection_failed"}
        await _wait_healthy(store, sids, 30)


@pytest.mark.timeout(120)
async def test_a_write_stalled_on_a_paused_server_is_bounded(own_server: _Server) -> None:
    """A write larger than the socket buffers, to a hung server (SIGSTOP), stalls in the
    send itself; the socket timeout bounds it there too (store.py: ``asyncio.timeout``, not
    redis-py's task per call): storage_connection_failed, then the store works again."""
    url = f"redis://127.0.0.1:{own_server.port}/0?prefix=w&socket_timeout=1&connect_timeout=1"
    async with open_session_store(url) as store:
        await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s"))
        big = [
            Event(type=EventType.MESSAGE_SENT, session_id="s", data={"x": "y" * 1_000_000})
            for _ in range(32)
        ]
        assert own_server.proc is not None
        own_server.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreError) as info:
                await store.append_events(big)
            took = time.monotonic() - started
        finally:
            own_server.proc.send_signal(signal.SIGCONT)
        assert info.value.code == "storage_connection_failed"
        assert info.value.details["reason"] == "timeout"
        assert "writing" in info.value.message, info.value.message
        assert took < 10, took
        stored = await store.append_event_with_sequence(
            Event(type=EventType.MESSAGE_SENT, session_id="s")
        )
        assert stored.sequence_number == 2


async def _pages_agree(
    store: RedisSessionStore,
    logs: dict[str, list[Event]],
    afters: Iterable[int],
    befores: Iterable[int | None],
    limits: Iterable[int],
) -> None:
    """Every (after, before, limit) page of each session is what filtering its log gives."""
    for sid, log in logs.items():
        for after, before, limit in itertools.product(afters, befores, limits):
            want = [
                e
                for e in log
                if e.sequence_number is not None
                and e.sequence_number > after
                and (before is None or e.sequence_number < before)
            ][:limit]
            got = await store.get_events(sid, after=after, before=before, limit=limit)
            assert got == want, (sid, after, before, limit)


async def test_plain_pages_agree_with_a_filter_of_the_log(
    rstore: RedisSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page oldest first without filters comes from GET + HMGET on a single node (no
    script) while the numbers it covers are all stored, and from the read script past a gap:
    every (after, before, limit) gives what filtering the whole log gives."""
    numbers = [1, 2, 3, 6, 7, 8, 9, 11]  # gaps below the counter (12): an import
    sid = "holes"
    rows = [
        Event(id=f"h{n}", type=EventType.MESSAGE_SENT, session_id=sid, sequence_number=n)
        for n in numbers
    ]
    await rstore.import_session(SessionExport(Session(id=sid, agent_id="a"), [], rows, 12))
    dense = await rstore.append_events(
        [Event(type=EventType.MESSAGE_SENT, session_id="dense") for _ in range(30)]
    )
    every = {sid: await rstore.get_events(sid), "dense": dense}
    assert [e.sequence_number for e in every[sid]] == numbers
    scripts = _script_calls(rstore, monkeypatch)
    await _pages_agree(rstore, every, range(0, 14), (None, 3, 7, 13, 31), (1, 2, 4, 100))
    scripts_before = scripts.count("read")
    assert await rstore.get_events("dense", after=3, limit=20) == dense[3:23]
    assert await rstore.get_events("dense", after=25, limit=20) == dense[25:]
    if not rstore.cluster:  # a dense page on a single node: no script call
        assert scripts.count("read") == scripts_before


async def test_long_plain_pages_agree_with_a_filter_of_the_log(
    rstore: RedisSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its first 128 numbers a plain page asks for the rest sized by the counter: pages
    across that edge, past the counter, and with a gap on either side of it are what
    filtering the whole log gives; a dense one still runs no script."""
    numbers = [n for n in range(1, 301) if n not in (100, 135, 129, 200)]
    rows = [
        Event(id=f"g{n}", type=EventType.MESSAGE_SENT, session_id="gaps", sequence_number=n)
        for n in numbers
    ]
    await rstore.import_session(SessionExport(Session(id="gaps", agent_id="a"), [], rows, 310))
    dense = await rstore.append_events(
        [Event(type=EventType.MESSAGE_SENT, session_id="long") for _ in range(300)]
    )
    every = {"gaps": await rstore.get_events("gaps"), "long": dense}
    assert [e.sequence_number for e in every["gaps"]] == numbers
    await _pages_agree(
        rstore,
        every,
        (0, 1, 99, 127, 128, 129, 150, 290, 300),
        (None, 129, 130, 250, 400),
        (127, 128, 129, 200, 1000),
    )
    scripts = _script_calls(rstore, monkeypatch)
    assert await rstore.get_events("long", limit=1000) == dense
    assert await rstore.get_events("long", after=10, limit=250) == dense[10:260]
    if not rstore.cluster:
        assert scripts.count("read") == 0
