"""``agent-session-store serve``: loopback by default, refuses an open bind without a token,
answers, and stops promptly with live streams open."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
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


def test_serve_answers_and_stops_with_streams_open(tmp_path: Path) -> None:
    port = _port()
    db = tmp_path / "s.db"
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
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(base + "/api/sessions", headers={"authorization": "Bearer tok"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        assert r.status_code == 200
        assert httpx.get(base + "/api/sessions").status_code == 401
        with httpx.Client(timeout=10, headers={"authorization": "Bearer tok"}) as client:
            with client.stream("GET", base + "/api/sessions/x/events/stream") as stream:
                assert stream.status_code == 200
                proc.send_signal(signal.SIGINT)
                started = time.monotonic()
                for _ in stream.iter_bytes():
                    pass  # ends when the server closes the stream
            assert proc.wait(10) in (0, 130)  # uvicorn re-raises the SIGINT it handled
            assert time.monotonic() - started < 5
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "tok" not in out.replace("token", "")  # the token is never logged
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
