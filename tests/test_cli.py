"""The command line, run as a real subprocess against a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent_session_store.models import Event, EventType
from agent_session_store.urls import open_session_store

CLI = [sys.executable, "-m", "agent_session_store"]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # tables are not squeezed to the runner's width
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_demo_writes_a_session_and_shows_its_timeline(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    proc = run_cli("demo", "--db", str(db))
    for word in ("session_started", "tool_call_completed", "run_completed", "code-helper"):
        assert word in proc.stdout
    url = f"sqlite:///{db}"
    listed = json.loads(run_cli("--url", url, "sessions", "list", "--json").stdout)
    assert [s["status"] for s in listed] == ["completed"]
    sid = listed[0]["id"]
    events = json.loads(run_cli("--url", url, "events", "list", sid, "--json").stdout)
    assert [e["sequence_number"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "session_started"
    assert events[-1]["type"] == "session_completed"
    tools = json.loads(
        run_cli("--url", url, "events", "list", sid, "--type", "tool_call_started", "--json").stdout
    )
    assert [e["data"]["tool"] for e in tools] == [
        "read_file",
        "run_tests",
        "apply_patch",
        "run_tests",
    ]
    shown = run_cli("--url", url, "sessions", "show", sid)
    assert "completed" in shown.stdout
    table = run_cli("--url", url, "events", "list", sid, "--limit", "3")
    assert "message_sent" in table.stdout
    assert "tool_call_started" not in table.stdout


def test_missing_schema_says_how_to_migrate(tmp_path: Path) -> None:
    # A blank file gets its schema on open; a database holding other tables is not changed.
    with contextlib.closing(sqlite3.connect(tmp_path / "fresh.db")) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    proc = run_cli("--url", url, "sessions", "list", check=False)
    assert proc.returncode == 2
    assert "[migration_required]" in proc.stderr
    assert "migrate" in proc.stderr
    assert "Traceback" not in proc.stderr
    run_cli("migrate", url)
    assert json.loads(run_cli("--url", url, "sessions", "list", "--json").stdout) == []


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("--url", "nosuch://x", "sessions", "list", check=False)
    assert proc.returncode == 2
    assert "unknown session store URL scheme" in proc.stderr
    assert "Traceback" not in proc.stderr
    url = f"sqlite:///{tmp_path / 'x.db'}?auto_migrate=true"
    proc = run_cli("--url", url, "sessions", "show", "nope", check=False)
    assert proc.returncode == 1
    assert "[session_not_found]" in proc.stderr


async def test_tail_follows_appends_from_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tail.db'}?auto_migrate=true"
    async with open_session_store(url) as store:
        await store.append_event(
            Event(type=EventType.MESSAGE_SENT, session_id="s", data={"content": "before"})
        )
        tail = await asyncio.create_subprocess_exec(
            *CLI,
            "--url",
            url,
            "events",
            "tail",
            "s",
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert tail.stdout is not None

        async def next_line() -> dict[str, Any]:
            assert tail.stdout is not None
            line = await asyncio.wait_for(tail.stdout.readline(), 60)
            assert line, "tail exited early"
            parsed: dict[str, Any] = json.loads(line)
            return parsed

        try:
            lines = [await next_line()]
            assert lines[0]["data"]["content"] == "before"
            # The tail is now caught up and long-polling; each append must show up live.
            for i in range(3):
                await store.append_event(
                    Event(type=EventType.MESSAGE_STREAMED, session_id="s", data={"delta": str(i)})
                )
                lines.append(await next_line())
            assert [line["sequence_number"] for line in lines] == [1, 2, 3, 4]
            assert [line["data"].get("delta") for line in lines[1:]] == ["0", "1", "2"]
        finally:
            tail.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(tail.wait(), 30)
    assert code in (0, 130)


def test_migrate_then_use_a_postgres_schema(unique_name: str) -> None:
    """The same commands against the real PostgreSQL server, in a schema of this test's own."""
    import asyncpg

    base = "postgresql://postgres@127.0.0.1:5432/test"
    url = f"{base}?schema={unique_name}"
    try:
        proc = run_cli("--url", url, "sessions", "list", check=False)
        assert proc.returncode == 2
        assert "[migration_required]" in proc.stderr
        run_cli("migrate", url)
        run_cli("migrate", url)  # a second run finds nothing to do
        run_cli("demo", "--store", url)
        listed = json.loads(run_cli("--url", url, "sessions", "list", "--json").stdout)
        assert [s["agent_id"] for s in listed] == ["code-helper"]
        events = json.loads(
            run_cli("--url", url, "events", "list", listed[0]["id"], "--json").stdout
        )
        assert [e["sequence_number"] for e in events] == list(range(1, 20))
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(base)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())
