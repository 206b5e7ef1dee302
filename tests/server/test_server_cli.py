"""``agent-session-store serve``: loopback by default, refuses an open bind without a token,
answers, and stops promptly with live streams open."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from agent_session_store.cli import main
from agent_session_store.errors import ValidationError
from agent_session_store.server import check_bind


def test_check_bind() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.8.9.10"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        with pytest.raises(ValidationError, match="token"):
            check_bind(host, None)
        check_bind(host, "a-token")


def test_serve_refuses_open_bind_without_token(capsys: pytest.CaptureFixture[str]) -> None:
    env_token = os.environ.pop("AGENT_SESSION_STORE_TOKEN", None)
    try:
        assert main(["--url", "memory://", "serve", "--host", "0.0.0.0"]) == 2
    finally:
        if env_token is not None:
            os.environ["AGENT_SESSION_STORE_TOKEN"] = env_token
    assert "refusing to listen on '0.0.0.0'" in capsys.readouterr().err


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(db: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """``serve`` in its own process on a SQLite file, token "tok"; answering on return."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_session_store",
            "serve",
            "--url",
            f"sqlite:///{db}?auto_migrate=true",
            "--port",
            str(port),
            "--token",
            "tok",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/sessions")
            return proc
        except httpx.ConnectError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"server did not start: {out}") from None
            time.sleep(0.05)


def _workers(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the server if it still runs, and its workers: found first, since a killed
    parent's children are no longer its children."""
    if proc.poll() is None:
        try:
            workers = _workers(proc)
        except psutil.NoSuchProcess:  # it ended just now
            workers = []
        proc.kill()
        proc.wait()
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_and_stops_with_streams_open(tmp_path: Path, workers: int) -> None:
    port = _port()
    proc = _start(tmp_path / "s.db", port, "--workers", str(workers))
    try:
        base = f"http://127.0.0.1:{port}"
        if workers > 1:
            assert len(_workers(proc)) == workers
        auth = {"authorization": "Bearer tok"}
        assert httpx.get(base + "/api/sessions", headers=auth).status_code == 200
        assert httpx.get(base + "/api/sessions").status_code == 401
        with httpx.Client(timeout=10, headers=auth) as client, contextlib.ExitStack() as held:
            streams = [
                held.enter_context(client.stream("GET", base + "/api/sessions/x/events/stream"))
                for _ in range(2 * workers)  # on every worker, most likely
            ]
            assert all(stream.status_code == 200 for stream in streams)
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            for stream in streams:
                for _ in stream.iter_bytes():
                    pass  # ends when the server closes the stream
            assert proc.wait(10) in (0, 130)  # uvicorn re-raises the SIGINT it handled
            assert time.monotonic() - started < 5
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "tok" not in out.replace("token", "")  # the token is never logged
    finally:
        _stop(proc)


def test_workers_see_appends_from_other_processes(tmp_path: Path) -> None:
    """Two workers; every stream, whichever worker holds it, gets an event appended by
    another process (this test's) straight into the database."""
    from agent_session_store import Event, EventType, Session
    from agent_session_store.sync import open_session_store

    port = _port()
    db = tmp_path / "s.db"
    proc = _start(db, port, "--workers", "2")
    try:
        base = f"http://127.0.0.1:{port}/api/sessions/live/events/stream"
        with (
            # a read waits 10 s at most, below the 15 s heartbeat: a missing event fails
            httpx.Client(
                timeout=httpx.Timeout(30, read=10), headers={"authorization": "Bearer tok"}
            ) as client,
            open_session_store(f"sqlite:///{db}") as store,
            contextlib.ExitStack() as held,
        ):
            store.save_session(Session(id="live", agent_id="a"))
            streams = [held.enter_context(client.stream("GET", base)) for _ in range(4)]
            assert all(stream.status_code == 200 for stream in streams)
            store.append_event(
                Event(type=EventType.MESSAGE_RECEIVED, session_id="live", data={"n": 1})
            )
            for stream in streams:
                seen = ""
                for text in stream.iter_text():
                    seen += text
                    if "\nid: 1\n" in "\n" + seen:
                        break
                assert '"n":1' in seen.replace(" ", "")
    finally:
        _stop(proc)


def test_a_worker_dying_stops_the_server(tmp_path: Path) -> None:
    port = _port()
    proc = _start(tmp_path / "s.db", port, "--workers", "2")
    try:
        first, second = _workers(proc)
        first.kill()
        assert proc.wait(30) == 1
        assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "a worker stopped" in out
    finally:
        _stop(proc)


def test_workers_refuse_a_memory_store() -> None:
    """In a process of its own with a deadline: a server that wrongly starts fails the
    test in a minute instead of serving on."""
    for args, said in (
        (
            ["--url", "memory://", "serve", "--workers", "2", "--port", str(_port())],
            "memory:// session store lives in one process",
        ),
        (["--url", "sqlite:///x.db", "serve", "--workers", "0"], "workers must be a positive int"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "agent_session_store", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2 and said in out.stderr, out.stderr


def test_serve_read_write_needs_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    env_token = os.environ.pop("AGENT_SESSION_STORE_TOKEN", None)
    try:
        assert main(["--url", "memory://", "serve", "--read-write"]) == 2
    finally:
        if env_token is not None:
            os.environ["AGENT_SESSION_STORE_TOKEN"] = env_token
    assert "--read-write needs --token" in capsys.readouterr().err


def test_without_the_extra_the_error_names_it() -> None:
    script = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "from agent_session_store.errors import StoreError\n"
        "import agent_session_store.server as s\n"
        "try:\n"
        "    s.create_app\n"
        "except StoreError as err:\n"
        "    print(err.code, err.details['extra'])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["dependency_not_available", "server"], out.stderr
