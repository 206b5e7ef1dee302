"""The JSON API in process (httpx over ASGI): filters, paging, errors, writes, security."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agent_session_store import (
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    open_session_store,
)
from agent_session_store.errors import QueryNotImplementedError, StorageError, StoreError
from agent_session_store.memory import InMemorySessionStore
from agent_session_store.ports import ArtifactStore, SessionStore
from agent_session_store.query import SessionStats
from agent_session_store.querying import QUERY_PRIMITIVES, QueryAndMaintenance
from agent_session_store.server import create_app
from agent_session_store.server.jsonenc import dumps_api, dumps_event, dumps_events
from agent_session_store.server.openapi import SPEC
from agent_session_store.server.queries import to_json
from agent_session_store.server.security import CSP
from agent_session_store.server.streams import encode_frame

from .conftest import asgi_client

TOKEN = "s3cret-token-for-tests"


async def _seed(store: SessionStore, sid: str = "ses_a", n: int = 5) -> list[Event]:
    await store.save_session(Session(id=sid, agent_id="agent-1", tags=["x"]))
    run = Run(
        id=f"run_{sid}",
        session_id=sid,
        status=RunStatus.COMPLETED,
        token_usage={"input_tokens": 10, "output_tokens": 5},
        cost_usd=0.01,
    )
    await store.save_run(run)
    events = [
        Event(
            type=EventType.MESSAGE_SENT if i % 2 else EventType.MESSAGE_RECEIVED,
            session_id=sid,
            run_id=run.id,
            data={"role": "user", "content": f"m{i}"},
        )
        for i in range(n)
    ]
    return await store.append_events(events)


async def test_session_runs_events(memory_store: SessionStore) -> None:
    await _seed(memory_store, n=7)
    async with asgi_client(create_app(memory_store)) as c:
        r = await c.get("/api/sessions/ses_a")
        assert r.status_code == 200
        body = r.json()
        assert body["session"]["agent_id"] == "agent-1"
        assert body["stats"]["run_count"] == 1
        assert body["stats"]["latest_sequence"] == 7
        assert body["stats"]["token_totals"]["total_tokens"] == 15
        runs = (await c.get("/api/sessions/ses_a/runs")).json()["items"]
        assert [x["id"] for x in runs] == ["run_ses_a"]
        assert (await c.get("/api/runs/run_ses_a")).json()["cost_usd"] == 0.01

        page = (await c.get("/api/sessions/ses_a/events", params={"limit": 3})).json()
        assert [e["sequence_number"] for e in page["items"]] == [1, 2, 3]
        assert page["next"] == {"after": 3}
        page = (await c.get("/api/sessions/ses_a/events", params={"after": 3, "limit": 3})).json()
        assert [e["sequence_number"] for e in page["items"]] == [4, 5, 6]
        desc = (
            await c.get("/api/sessions/ses_a/events", params={"order": "desc", "limit": 2})
        ).json()
        assert [e["sequence_number"] for e in desc["items"]] == [7, 6]
        assert desc["next"] == {"before": 6}
        typed = (await c.get("/api/sessions/ses_a/events", params={"type": "message_sent"})).json()
        assert {e["type"] for e in typed["items"]} == {"message_sent"}
        assert len(typed["items"]) == 3
        bounded = (
            await c.get("/api/sessions/ses_a/events", params={"after": 2, "before": 5})
        ).json()
        assert [e["sequence_number"] for e in bounded["items"]] == [3, 4]
        none = (
            await c.get("/api/sessions/ses_a/events", params={"since": "2999-01-01T00:00:00+00:00"})
        ).json()
        assert none["items"] == []


async def test_visible_history_after_rewind(memory_store: SessionStore) -> None:
    await _seed(memory_store, n=4)
    await memory_store.append_event(
        Event(type=EventType.HISTORY_REWOUND, session_id="ses_a", data={"to_sequence": 2})
    )
    async with asgi_client(create_app(memory_store)) as c:
        items = (await c.get("/api/sessions/ses_a/visible")).json()["items"]
    assert [e["sequence_number"] for e in items] == [1, 2]


async def test_long_poll_over_http(memory_store: SessionStore) -> None:
    await _seed(memory_store, n=1)
    import asyncio

    async with asgi_client(create_app(memory_store)) as c:
        waiting = asyncio.create_task(
            c.get("/api/sessions/ses_a/events", params={"after": 1, "wait_timeout_ms": 5000})
        )
        await asyncio.sleep(0)
        await memory_store.append_event(Event(type=EventType.TURN_COMPLETED, session_id="ses_a"))
        r = await asyncio.wait_for(waiting, 5)
    assert [e["sequence_number"] for e in r.json()["items"]] == [2]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/sessions/nope", {}, 404, "session_not_found"),
        ("/api/runs/nope", {}, 404, "run_not_found"),
        ("/api/sessions/ses_a/events", {"limit": "abc"}, 400, "validation_error"),
        ("/api/sessions/ses_a/events", {"limit": "0"}, 400, "validation_error"),
        ("/api/sessions/ses_a/events", {"limit": "1001"}, 400, "validation_error"),
        ("/api/sessions/ses_a/events", {"type": "bogus"}, 400, "invalid_event_type"),
        ("/api/sessions/ses_a/events", {"order": "sideways"}, 400, "validation_error"),
        ("/api/sessions/ses_a/events", {"since": "yesterday"}, 400, "validation_error"),
        ("/api/sessions/ses_a/events", {"since": "2026-01-01T00:00:00"}, 400, "validation_error"),
        ("/api/sessions/ses_a/runs", {"status": "bogus"}, 400, "invalid_status"),
        ("/api/sessions", {"order_by": "random"}, 400, "validation_error"),
        ("/api/no/such/route", {}, 404, "not_found"),
    ],
)
async def test_errors_are_code_and_message(
    memory_store: SessionStore, path: str, params: dict[str, str], status: int, code: str
) -> None:
    await _seed(memory_store, n=1)
    async with asgi_client(create_app(memory_store)) as c:
        r = await c.get(path, params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]


async def test_unreachable_backend_is_503() -> None:
    store = open_session_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1")
    try:
        async with asgi_client(create_app(store)) as c:
            r = await c.get("/api/sessions/x")
        assert r.status_code == 503
        assert r.json()["code"] == "storage_connection_failed"
        assert "127.0.0.1:1" not in r.json()["message"] or "@" not in r.json()["message"]
    finally:
        await store.close()


# ---------------------------------------------------------------- writes and tokens


async def test_writes_refused_when_read_only_or_without_token(memory_store: SessionStore) -> None:
    for app in (
        create_app(memory_store),  # read-only
        create_app(memory_store, token=TOKEN),  # read-only, token
        create_app(memory_store, read_only=False),  # writable but no token
    ):
        async with asgi_client(app, authorization=f"Bearer {TOKEN}") as c:
            r = await c.put("/api/sessions/s1", json={"agent_id": "a"})
            assert r.status_code == 403
            assert r.json()["code"] == "forbidden"
    with pytest.raises(Exception, match="session_not_found"):
        await memory_store.get_session("s1")


async def test_writes_with_token(memory_store: SessionStore) -> None:
    app = create_app(memory_store, read_only=False, token=TOKEN)
    async with asgi_client(app) as anon:
        r = await anon.put("/api/sessions/s1", json={"agent_id": "a"})
        assert r.status_code == 401
        assert r.json()["code"] == "unauthorized"
        r = await anon.put(
            "/api/sessions/s1", json={"agent_id": "a"}, headers={"authorization": "Bearer wrong"}
        )
        assert r.status_code == 401
        # The login cookie is enough to read, never to write (no cross-site forged writes).
        anon.cookies.set("ass_token", TOKEN)
        r = await anon.put("/api/sessions/s1", json={"agent_id": "a"})
        assert r.status_code == 401
    async with asgi_client(app, authorization=f"Bearer {TOKEN}") as c:
        r = await c.put("/api/sessions/s1", json={"agent_id": "a", "tags": ["t"]})
        assert r.status_code == 200, r.text
        assert (await memory_store.get_session("s1")).tags == ["t"]
        r = await c.put("/api/runs/r1", json={"session_id": "s1", "status": "running"})
        assert r.status_code == 200, r.text
        r = await c.post(
            "/api/sessions/s1/events",
            json={
                "events": [
                    {"type": "message_sent", "data": {"role": "user", "content": "hi"}},
                    {"type": "turn_completed", "id": "evt_fixed", "sequence_number": 99},
                ]
            },
        )
        assert r.status_code == 201, r.text
        assert [e["sequence_number"] for e in r.json()["items"]] == [1, 2]
        r = await c.post(
            "/api/sessions/s1/events",
            json={"events": [{"type": "turn_completed"}], "expected_sequence": 1},
        )
        assert r.status_code == 409
        assert r.json()["code"] == "sequence_conflict"
        assert r.json()["details"] == {"session_id": "s1", "expected": 1, "actual": 2}
        r = await c.post(
            "/api/sessions/s1/events",
            json={"events": [{"type": "turn_completed"}], "expected_sequence": 2},
        )
        assert r.status_code == 201
        # A bad element rejects the whole batch, nothing written.
        r = await c.post(
            "/api/sessions/s1/events",
            json={"events": [{"type": "turn_completed"}, {"type": "nope"}]},
        )
        assert r.status_code == 400
        assert r.json()["code"] == "invalid_event_type"
        assert await memory_store.get_latest_sequence("s1") == 3
        r = await c.post("/api/sessions/s1/events", content=b"{not json")
        assert r.status_code == 400
        r = await c.post(
            "/api/sessions/s1/events",
            json={"events": [{"type": "turn_completed", "session_id": "other"}]},
        )
        assert r.status_code == 400


async def test_request_size_limits(memory_store: SessionStore) -> None:
    app = create_app(memory_store, read_only=False, token=TOKEN, max_body_bytes=1000)
    async with asgi_client(app, authorization=f"Bearer {TOKEN}") as c:
        big = {"events": [{"type": "message_sent", "data": {"content": "x" * 2000}}]}
        r = await c.post("/api/sessions/s1/events", json=big)
        assert r.status_code == 413
        assert r.json()["code"] == "payload_too_large"

        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 500

        r = await c.post("/api/sessions/s1/events", content=chunks())
        assert r.status_code == 413
    assert await memory_store.get_latest_sequence("s1") == 0


async def test_token_guards_reads_and_login_sets_cookie(memory_store: SessionStore) -> None:
    await _seed(memory_store, n=1)
    app = create_app(memory_store, token=TOKEN)
    async with asgi_client(app) as c:
        r = await c.get("/api/sessions/ses_a")
        assert r.status_code == 401
        r = await c.get("/sessions/ses_a")
        assert r.status_code == 303
        assert r.headers["location"] == "/login"
        assert (await c.get("/login")).status_code == 200
        assert (await c.get("/static/app.js")).status_code == 200
        r = await c.post("/login", data={"token": "wrong"})
        assert r.status_code == 401
        r = await c.post("/login", data={"token": TOKEN})
        assert r.status_code == 303
        assert "httponly" in r.headers["set-cookie"].lower()
        assert "samesite=strict" in r.headers["set-cookie"].lower()
        assert (await c.get("/sessions/ses_a")).status_code == 200
        assert (await c.get("/api/sessions/ses_a")).status_code == 200
    async with asgi_client(app, authorization=f"Bearer {TOKEN}") as c:
        assert (await c.get("/api/sessions/ses_a")).status_code == 200


async def test_security_headers(memory_store: SessionStore) -> None:
    await _seed(memory_store, n=1)
    async with asgi_client(create_app(memory_store)) as c:
        for path in ("/", "/sessions/ses_a", "/api/sessions/ses_a", "/api/sessions/nope"):
            r = await c.get(path)
            assert r.headers["content-security-policy"] == CSP
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP


async def test_ids_with_slashes_and_odd_characters(memory_store: SessionStore) -> None:
    odd = ["a/b", "x/events/stream", "with space?&#", "ünï/../cödé", "%2F"]
    for sid in odd:
        await _seed(memory_store, sid=sid, n=2)
    from urllib.parse import quote

    async with asgi_client(create_app(memory_store)) as c:
        for sid in odd:
            q = quote(sid, safe="")
            r = await c.get(f"/api/sessions/{q}")
            assert r.status_code == 200, (sid, r.text)
            assert r.json()["session"]["id"] == sid
            r = await c.get(f"/api/sessions/{q}/events")
            assert [e["session_id"] for e in r.json()["items"]] == [sid, sid]
            r = await c.get(f"/sessions/{q}")
            assert r.status_code == 200


async def test_openapi_lists_every_api_route(memory_store: SessionStore) -> None:
    app = create_app(memory_store)
    paths = set(SPEC["paths"])
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/api"):
            norm = path.replace(":seg}", "}")
            assert norm in paths, norm
    async with asgi_client(app) as c:
        assert (await c.get("/api/openapi.json")).json()["openapi"].startswith("3.")


class SessionOnly:
    """A third-party backend that implements SessionStore and nothing of contract 7."""

    _NAMES = frozenset(
        n for n in dir(SessionStore) if not n.startswith("_") or n in ("__aenter__", "__aexit__")
    )

    def __init__(self, inner: SessionStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name not in self._NAMES:
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_sessions_fallback_without_query_api(memory_store: SessionStore) -> None:
    for i in range(5):
        await memory_store.save_session(Session(id=f"s{i}", agent_id="a" if i % 2 else "b"))
    app = create_app(SessionOnly(memory_store))
    async with asgi_client(app) as c:
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await c.get("/api/sessions", params=params)).json()
            seen += [s["id"] for s in page["items"]]
            cursor = page["cursor"]
            if not cursor:
                break
        assert seen == [f"s{i}" for i in range(5)]  # created_at ascending: all it can do
        only = (await c.get("/api/sessions", params={"agent_id": "a"})).json()
        assert [s["id"] for s in only["items"]] == ["s1", "s3"]
        bad = await c.get("/api/sessions", params={"cursor": "garbage!"})
        assert bad.status_code == 400
        assert bad.json()["code"] == "invalid_cursor"
        r = await c.get("/api/sessions", params={"tag": "x"})
        assert r.status_code == 501 and r.json()["code"] == "not_supported"
        for path in ("/api/usage", "/api/cost", "/api/events"):
            r = await c.get(path)
            assert r.status_code == 501 and r.json()["code"] == "not_supported"
        stats = (await c.get("/api/sessions/s1/stats")).json()
        assert stats["run_count"] == 0 and stats["latest_sequence"] == 0
        assert (await c.get("/")).status_code == 200
        assert (await c.get("/sessions/s1")).status_code == 200


async def test_session_search_filters_orders_cursors(memory_store: SessionStore) -> None:
    for i in range(6):
        await memory_store.save_session(
            Session(
                id=f"s{i}",
                agent_id="a" if i % 2 else "b",
                status=SessionStatus.ACTIVE if i < 3 else SessionStatus.COMPLETED,
                tags=["t"] if i % 3 == 0 else [],
            )
        )
    # Activity makes s2 the most recently updated.
    await memory_store.append_event(Event(type=EventType.TURN_COMPLETED, session_id="s2"))
    async with asgi_client(create_app(memory_store)) as c:
        first = (await c.get("/api/sessions", params={"limit": 1})).json()
        assert first["items"][0]["id"] == "s2"
        seen: list[str] = []
        params: dict[str, Any] = {
            "limit": 4,
            "order_by": "created_at_desc",
            "include_total": "true",
        }
        page = (await c.get("/api/sessions", params=params)).json()
        assert page["total_count"] == 6
        seen += [s["id"] for s in page["items"]]
        page = (await c.get("/api/sessions", params={**params, "cursor": page["cursor"]})).json()
        seen += [s["id"] for s in page["items"]]
        assert seen == ["s5", "s4", "s3", "s2", "s1", "s0"]
        tagged = (
            await c.get("/api/sessions", params={"tag": "t", "order_by": "created_at_asc"})
        ).json()
        assert [s["id"] for s in tagged["items"]] == ["s0", "s3"]
        both = (
            await c.get(
                "/api/sessions",
                params={
                    "status": "active,completed",
                    "agent_id": "a",
                    "order_by": "created_at_asc",
                },
            )
        ).json()
        assert [s["id"] for s in both["items"]] == ["s1", "s3", "s5"]
        r = await c.get("/api/sessions", params={"cursor": page["cursor"] or first["cursor"]})
        assert r.status_code == 400 and r.json()["code"] == "invalid_cursor"  # other ordering
        r = await c.get(
            "/api/sessions",
            params={"created_after": "2000-01-01T00:00:00Z", "order_by": "created_at_asc"},
        )
        assert len(r.json()["items"]) == 6


async def test_usage_cost_and_event_search(memory_store: SessionStore) -> None:
    await _seed(memory_store, sid="s1", n=3)
    await _seed(memory_store, sid="s2", n=2)
    async with asgi_client(create_app(memory_store)) as c:
        usage = (await c.get("/api/usage")).json()
        assert usage["total_tokens"] == 30 and usage["run_count"] == 2
        one = (await c.get("/api/usage", params={"session_id": "s1"})).json()
        assert one["total_tokens"] == 15
        cost = (await c.get("/api/cost")).json()
        assert abs(cost["total_cost_usd"] - 0.02) < 1e-9
        found = (await c.get("/api/events", params={"type": "message_sent", "limit": 1})).json()
        assert len(found["items"]) == 1 and found["cursor"]
        more = (
            await c.get("/api/events", params={"type": "message_sent", "cursor": found["cursor"]})
        ).json()
        assert {e["type"] for e in more["items"]} == {"message_sent"}
        assert len(found["items"]) + len(more["items"]) == 2
        scoped = (await c.get("/api/events", params={"session_id": "s2"})).json()
        assert {e["session_id"] for e in scoped["items"]} == {"s2"}
        stats = (await c.get("/api/sessions/s1/stats")).json()
        assert stats["event_count"] == 3 and stats["cost_usd"] == 0.01


# ---------------------------------------------------------------- artifacts


async def test_artifacts_list_stat_download_ranges(
    memory_store: SessionStore, memory_artifacts: ArtifactStore
) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    await memory_artifacts.put("sessions/s1/patch.diff", data)
    await memory_artifacts.put("sessions/s1/notes.txt", b"hello")
    await memory_artifacts.put("other/x", b"x")
    app = create_app(memory_store, artifacts=memory_artifacts)
    async with asgi_client(app) as c:
        keys = (await c.get("/api/artifacts", params={"prefix": "sessions/s1/"})).json()["items"]
        assert keys == ["sessions/s1/notes.txt", "sessions/s1/patch.diff"]
        stat = (await c.get("/api/artifacts/stat", params={"key": "sessions/s1/patch.diff"})).json()
        assert stat["size"] == len(data)
        url = "/api/artifacts/download"
        key = {"key": "sessions/s1/patch.diff"}
        r = await c.get(url, params=key)
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["content-disposition"].startswith("attachment;")
        assert "sandbox" in r.headers["content-security-policy"]
        r = await c.get(url, params=key, headers={"range": "bytes=100-299"})
        assert r.status_code == 206 and r.content == data[100:300]
        assert r.headers["content-range"] == f"bytes 100-299/{len(data)}"
        r = await c.get(url, params=key, headers={"range": "bytes=-10"})
        assert r.status_code == 206 and r.content == data[-10:]
        r = await c.get(url, params=key, headers={"range": "bytes=10000-"})
        assert r.content == data[10000:]
        r = await c.get(url, params=key, headers={"range": "bytes=99999-"})
        assert r.status_code == 416
        assert r.headers["content-range"] == f"bytes */{len(data)}"
        r = await c.get(url, params={"key": "missing"})
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        r = await c.get(url)
        assert r.status_code == 400


async def test_artifact_routes_stay_inside_the_store(
    memory_store: SessionStore, tmp_path: Any
) -> None:
    from agent_session_store import open_artifact_store

    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve me")
    root = tmp_path / "root"
    async with open_artifact_store(f"file://{root}") as arts:
        await arts.put("inside.txt", b"ok")
        app = create_app(memory_store, artifacts=arts)
        async with asgi_client(app) as c:
            for key in ("../secret.txt", "../../secret.txt", "/" + str(secret), "./../secret.txt"):
                r = await c.get("/api/artifacts/download", params={"key": key})
                assert r.status_code in (400, 404), key
                assert b"do not serve me" not in r.content
                r = await c.get("/artifacts/view", params={"key": key})
                assert b"do not serve me" not in r.content
            r = await c.get("/static/../../../../etc/passwd")
            assert r.status_code == 404
            assert b"root:" not in r.content


async def test_artifact_put_with_token(
    memory_store: SessionStore, memory_artifacts: ArtifactStore
) -> None:
    app = create_app(
        memory_store,
        artifacts=memory_artifacts,
        read_only=False,
        token=TOKEN,
        max_artifact_bytes=100,
    )
    async with asgi_client(app, authorization=f"Bearer {TOKEN}") as c:
        r = await c.put("/api/artifacts", params={"key": "a/b.txt"}, content=b"data")
        assert r.status_code == 201
        assert r.json()["size"] == 4
        r = await c.put("/api/artifacts", params={"key": "a/big"}, content=b"x" * 101)
        assert r.status_code == 413
    assert await memory_artifacts.get("a/b.txt") == b"data"
    assert not await memory_artifacts.exists("a/big")


async def test_session_page_for_events_without_a_record(memory_store: SessionStore) -> None:
    await memory_store.append_event(
        Event(
            type=EventType.MESSAGE_SENT, session_id="orphan", data={"role": "user", "content": "hi"}
        )
    )
    async with asgi_client(create_app(memory_store)) as c:
        r = await c.get("/sessions/orphan")
        assert r.status_code == 200
        assert "No session record" in r.text and "hi" in r.text
        r = await c.get("/sessions/nothing-at-all")
        assert r.status_code == 404
        assert "session_not_found" in r.text


class _QueriesLater(InMemorySessionStore):
    """A backend on the shared base without the query primitives, whose stub error reads
    differently from the base's: only the typed signal can tell the server."""

    def _unsupported(self) -> StoreError:
        return QueryNotImplementedError("queries arrive in the next release")


for _name in QUERY_PRIMITIVES:
    setattr(_QueriesLater, _name, getattr(QueryAndMaintenance, _name))


class _BrokenIndex(InMemorySessionStore):
    """Implements queries, but its session search fails with a storage error whose text
    happens to say "does not implement": that is a failure to report, not a missing API."""

    async def _search_sessions(self, q: Any, after: Any, limit: int) -> list[Session]:
        raise StorageError("the index file does not implement format 3")


async def test_query_support_is_a_typed_signal_not_an_error_text() -> None:
    async with _QueriesLater() as later:
        await later.save_session(Session(id="s1", agent_id="a"))
        async with asgi_client(create_app(later)) as c:
            page = (await c.get("/api/sessions")).json()
            assert [s["id"] for s in page["items"]] == ["s1"]  # the list_sessions fallback
            r = await c.get("/api/usage")
            assert r.status_code == 501 and r.json()["code"] == "not_supported"
            assert (await c.get("/")).status_code == 200
    async with _BrokenIndex() as broken:
        await broken.save_session(Session(id="s1", agent_id="a"))
        async with asgi_client(create_app(broken)) as c:
            r = await c.get("/api/sessions")
            assert r.status_code == 500 and r.json()["code"] == "storage_error"


async def test_payload_beyond_64_bits_is_served_like_any_other(memory_store: SessionStore) -> None:
    """orjson refuses integers past 64 bits; such a stored value still encodes (json)."""
    await memory_store.save_session(Session(id="s1", agent_id="a"))
    big = {"n": 2**70, "neg": -(2**65), "text": "é <b>"}
    await memory_store.append_event(
        Event(type=EventType.TOOL_CALL_COMPLETED, session_id="s1", data=big)
    )
    async with asgi_client(create_app(memory_store)) as c:
        r = await c.get("/api/sessions/s1/events")
        assert r.status_code == 200, r.text
        assert r.json()["items"][0]["data"] == big


_STAMPS = [
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # a zero fraction: orjson would drop it
    datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    datetime(2026, 5, 6, 7, 8, 9, 10, tzinfo=timezone(timedelta(hours=3))),
    datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
]


@pytest.mark.parametrize("stamp", _STAMPS, ids=["zero-us", "year-999", "offset", "plain"])
def test_fast_encoders_write_what_to_dict_gives(stamp: datetime) -> None:
    """Events and query results skip ``to_dict``/``to_json`` on the way to JSON (orjson
    formats the timestamps); the bytes must stay those of the slow path."""

    def slow(value: Any) -> bytes:
        return json.dumps(to_json(value), ensure_ascii=False, separators=(",", ":")).encode()

    for data in ({"k": "é <b>\u2028"}, {"n": 2**70}):
        event = Event(
            type=EventType.TOOL_CALL_COMPLETED,
            session_id="s1",
            run_id="r1",
            timestamp=stamp,
            sequence_number=7,
            data=data,
            metadata={"m": [1, None]},
        )
        assert dumps_event(event) == slow(event)
        assert encode_frame(event) == b"id: 7\ndata: " + slow(event) + b"\n\n"
        assert dumps_api({"items": [event], "next": None}) == slow({"items": [event], "next": None})
        page = {"items": [event, event], "next": {"after": 7}}
        assert dumps_events([event, event], next={"after": 7}) == slow(page)
    stats = SessionStats(
        session_id="s1",
        event_count=1,
        run_count=0,
        token_totals={"input_tokens": 1},
        cost_usd=None,
        providers_used=[],
        first_event_at=stamp,
        last_event_at=None,
        status_counts={"completed": 1},
        latest_sequence=1,
    )
    assert dumps_api({"stats": stats}) == slow({"stats": stats})
