"""Requests leave no reference cycles behind: under load, what only the garbage collector can
free is what makes it run full passes, which stall the loop (and so the API's p99) for tens
of milliseconds each (bench/server.py, issue 11)."""

from __future__ import annotations

import gc
import socket
from pathlib import Path

import pytest

from agent_session_store import Event, EventType, Session

from .conftest import LiveServer

SID = "ses_cycles"
REQUESTS = 20


def _get(sock: socket.socket, path: str) -> bytes:
    """One keep-alive GET on a plain socket (no client library to make garbage of its own)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        body += chunk
    return head.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_requests_leave_no_reference_cycles(tmp_path: Path, http: str) -> None:
    server = LiveServer(f"sqlite:///{tmp_path / 's.db'}?auto_migrate=true", http=http).start()
    try:

        async def seed() -> None:
            assert server.store is not None
            await server.store.save_session(Session(id=SID, agent_id="a"))
            events = [
                Event(type=EventType.MESSAGE_SENT, session_id=SID, data={"i": i}) for i in range(5)
            ]
            await server.store.append_events(events)

        server.call(seed)
        paths = [f"/api/sessions/{SID}", f"/api/sessions/{SID}/events?limit=100"]
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            _get(sock, paths[0])  # warm: imports and caches made by a first request
            gc.collect()
            gc.disable()
            try:
                for i in range(REQUESTS):
                    assert b" 200 " in _get(sock, paths[i % 2])
                gc.set_debug(gc.DEBUG_SAVEALL)  # keep what a collection finds, to look at it
                gc.collect()
                left = [type(o).__qualname__ for o in gc.garbage if _from_a_request(o)]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
        assert left == []
    finally:
        server.stop()


def _from_a_request(obj: object) -> bool:
    """uvicorn's per-request objects (its cycle holds the scope, send and the transport)."""
    return type(obj).__module__.startswith(("uvicorn.", "starlette.", "agent_session_store."))
