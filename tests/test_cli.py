"""The command line, run as a real subprocess against real SQLite files and PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent_session_store import __version__, sync
from agent_session_store.cli import EXIT_CODES, build_parser
from agent_session_store.models import Event, EventType, Run, Session
from agent_session_store.urls import open_session_store
from service_urls import PG_DSN

CLI = [sys.executable, "-m", "agent_session_store"]
PG = PG_DSN


def run_cli(
    *args: str, check: bool = True, columns: int = 200, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": str(columns), **env}  # tables are not squeezed
    full_env.pop("FORCE_COLOR", None) if "FORCE_COLOR" not in env else None
    proc = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, env=full_env, cwd=cwd
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}?auto_migrate=true"


def _ev(session_id: str, type: EventType = EventType.MESSAGE_SENT, **kw: Any) -> Event:
    return Event(type=type, session_id=session_id, **kw)


@pytest.fixture
def pg_schema(unique_name: str) -> Iterator[str]:
    yield f"{PG}?schema={unique_name}"
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


# ---------------------------------------------------------------- demo (issue 14.8)


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
    assert not any(e["metadata"].get("shape_warnings") for e in events)  # follows conventions
    tools = json.loads(
        run_cli("--url", url, "events", "list", sid, "--type", "tool_call_started", "--json").stdout
    )
    assert [e["data"]["tool_name"] for e in tools] == [
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


def test_demo_hint_works_from_any_directory(tmp_path: Path) -> None:
    """The printed follow-up command uses an absolute URL and an absolute executable."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "elsewhere").mkdir()
    proc = run_cli("demo", cwd=tmp_path / "repo")  # the default, relative --db
    hint = next(line.strip() for line in proc.stdout.splitlines() if "events list" in line)
    argv = shlex.split(hint)
    assert Path(argv[0]).is_absolute() or Path(argv[0]).name.startswith("python")
    url = argv[argv.index("--url") + 1]
    assert url.startswith("sqlite:////"), url  # absolute path
    again = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=tmp_path / "elsewhere"
    )
    assert again.returncode == 0, again.stderr
    assert "tool_call_completed" in again.stdout
    assert "activate" in proc.stdout


# ---------------------------------------------------------------- help, version, exit codes


def _walk(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, Any, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")
        else:
            yield path, action, parser.format_help()


def test_version_and_every_option_has_help_showing_its_default() -> None:
    assert run_cli("--version").stdout.strip() == f"agent-session-store {__version__}"
    checked = 0
    for path, action, text in _walk(build_parser()):
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        assert action.help, f"{path}: {action.option_strings or action.dest} has no help"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in " ".join(text.split()), (path, action.dest)
        checked += 1
    assert checked > 30
    top = run_cli("--help").stdout
    for code in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s", top, re.M), code


def test_exit_codes_tell_usage_from_store_errors(tmp_path: Path, pg_schema: str) -> None:
    url = sqlite_url(tmp_path / "x.db")
    assert run_cli("sessions", "list", "--limit", "x", check=False).returncode == 2  # argparse
    bad_url = run_cli("--url", "nosuch://x", "sessions", "list", check=False)
    assert bad_url.returncode == 2 and "unknown session store URL scheme" in bad_url.stderr
    assert "Traceback" not in bad_url.stderr
    missing = run_cli("--url", url, "sessions", "show", "nope", check=False)
    assert missing.returncode == 1 and "[session_not_found]" in missing.stderr
    schema = run_cli("--url", pg_schema, "sessions", "list", check=False)
    assert schema.returncode == 3 and "migrate" in schema.stderr
    down = run_cli("--url", "postgresql://postgres@127.0.0.1:1/x", "sessions", "list", check=False)
    assert down.returncode == 1 and "[storage_connection_failed]" in down.stderr
    no_extra = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['asyncpg'] = None\n"
            "from agent_session_store.cli import main\n"
            "sys.exit(main(['--url', 'postgresql://h/db', 'sessions', 'list']))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_extra.returncode == 4 and "[dependency_not_available]" in no_extra.stderr
    copy_both = run_cli("copy", "--from", url, "--to", url, "s", "--all", check=False)
    assert copy_both.returncode == 2


# ---------------------------------------------------------------- sessions list


def test_sessions_list_newest_activity_first_and_says_when_more_exist(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "many.db")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with sync.open_session_store(url) as store:
        for i in range(60):
            # created in order, but activity in the reverse order
            store.save_session(
                Session(
                    id=f"s{i:02d}",
                    agent_id="a",
                    created_at=t0 + timedelta(minutes=i),
                    updated_at=t0 + timedelta(days=1, minutes=-i),
                )
            )
    table = run_cli("--url", url, "sessions", "list", columns=300)
    assert "50 of 60 session(s), newest activity first" in table.stdout
    # --cursor where the backend pages by keyset (contract 7.2), --offset until then
    hint = re.search(r"next: (--offset 50|--cursor \S+)", table.stdout)
    assert hint, table.stdout
    listed = run_cli("--url", url, "sessions", "list", "--json")
    assert [s["id"] for s in json.loads(listed.stdout)] == [f"s{i:02d}" for i in range(50)]
    assert hint.group(0) in listed.stderr
    rest = run_cli("--url", url, "sessions", "list", "--json", *hint.group(1).split())
    assert [s["id"] for s in json.loads(rest.stdout)] == [f"s{i:02d}" for i in range(50, 60)]
    assert "next:" not in rest.stderr


def test_ids_are_never_truncated_at_80_columns(tmp_path: Path) -> None:
    db = tmp_path / "narrow.db"
    run_cli("demo", "--db", str(db))
    url = f"sqlite:///{db}"
    sid = json.loads(run_cli("--url", url, "sessions", "list", "--json").stdout)[0]["id"]
    rid = json.loads(run_cli("--url", url, "sessions", "show", sid, "--json").stdout)["runs"][0]
    views: list[tuple[str, ...]] = [
        ("sessions", "list"),
        ("sessions", "show", sid),
        ("events", "list", sid),
    ]
    for args in views:
        out = run_cli("--url", url, *args, columns=80).stdout
        assert max(len(line) for line in out.splitlines()) <= 80, out
        assert sid in out, (args, out)
        if args[0] == "events" or args[1] == "show":
            assert rid["id"] in out, (args, out)


def test_statuses_are_coloured_unless_no_color(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    run_cli("demo", "--db", str(db))
    url = f"sqlite:///{db}"
    coloured = run_cli("--url", url, "sessions", "list", FORCE_COLOR="1").stdout
    assert re.search(r"\x1b\[[0-9;]*m\s*completed", coloured), coloured
    plain = run_cli("--url", url, "sessions", "list", FORCE_COLOR="1", NO_COLOR="1").stdout
    assert not re.search(r"\x1b\[[0-9;]*m\s*completed", plain), plain


# ---------------------------------------------------------------- events list / tail


def _session_with_runs(url: str) -> list[Event]:
    with sync.open_session_store(url) as store:
        store.save_session(Session(id="s", agent_id="a"))
        store.save_run(Run(id="run_alpha_1", session_id="s"))
        store.save_run(Run(id="run_alpha_2", session_id="s"))
        store.save_run(Run(id="run_beta", session_id="s"))
        return store.append_events(
            [
                _ev("s", EventType.MESSAGE_SENT, run_id="run_alpha_1"),
                _ev("s", EventType.TOOL_CALL_STARTED, run_id="run_alpha_2"),
                _ev("s", EventType.TOOL_CALL_FAILED, run_id="run_beta"),
                _ev("s", EventType.TOKEN_USAGE_UPDATED, run_id="run_beta"),
                _ev("s", EventType.TOOL_APPROVAL_DENIED, run_id="run_beta"),
            ]
        )


def _seqs(proc: subprocess.CompletedProcess[str]) -> list[int]:
    return [e["sequence_number"] for e in json.loads(proc.stdout)]


def test_type_is_repeatable_and_takes_families_and_run_takes_a_unique_prefix(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "f.db")
    _session_with_runs(url)

    def listed(*args: str) -> list[int]:
        return _seqs(run_cli("--url", url, "events", "list", "s", "--json", *args))

    assert listed("--type", "tool") == [2, 3]  # every tool_call_* type
    assert listed("--type", "tool", "--type", "usage") == [2, 3, 4]
    assert listed("--type", "message_sent,approval") == [1, 5]
    assert listed("--type", "tool", "--order", "desc", "--limit", "1") == [3]
    assert listed("--run", "run_b") == [3, 4, 5]
    assert listed("--run", "run_alpha_2") == [2]
    ambiguous = run_cli("--url", url, "events", "list", "s", "--run", "run_alpha", check=False)
    assert ambiguous.returncode == 2
    assert "ambiguous" in ambiguous.stderr and "run_alpha_1" in ambiguous.stderr
    unknown = run_cli("--url", url, "events", "list", "s", "--type", "bogus", check=False)
    assert unknown.returncode == 2 and "families" in unknown.stderr
    assert listed("--limit", "2") == [1, 2]
    more = run_cli("--url", url, "events", "list", "s", "--limit", "2")
    assert "more exist — next: --after 2" in more.stdout


def test_unknown_session_is_a_warning_on_stderr(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "u.db")
    _session_with_runs(url)
    proc = run_cli("--url", url, "events", "list", "nope", "--json")
    assert json.loads(proc.stdout) == []
    assert "warning: no session 'nope'" in proc.stderr
    assert "no session record and no events" in proc.stderr
    known = run_cli("--url", url, "events", "list", "s", "--json")
    assert "warning" not in known.stderr
    with sync.open_session_store(url) as store:
        store.append_event(_ev("record_less"))  # events without a record: not unknown
    assert "warning" not in run_cli("--url", url, "events", "list", "record_less").stderr


async def test_tail_says_it_waits_warns_and_follows_appends(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "tail.db")
    async with open_session_store(url) as store:
        await store.append_event(_ev("s", data={"content": "before"}))
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
        assert tail.stdout is not None and tail.stderr is not None

        async def next_line() -> dict[str, Any]:
            assert tail.stdout is not None
            line = await asyncio.wait_for(tail.stdout.readline(), 60)
            assert line, "tail exited early"
            parsed: dict[str, Any] = json.loads(line)
            return parsed

        try:
            waiting = await asyncio.wait_for(tail.stderr.readline(), 60)
            assert b"waiting for new events" in waiting
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
            assert not any(line["rewound"] for line in lines)
        finally:
            tail.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(tail.wait(), 30)
    assert code in (0, 130)
    unknown = await asyncio.create_subprocess_exec(
        *CLI,
        "--url",
        url,
        "events",
        "tail",
        "nobody",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert unknown.stderr is not None
    try:
        text = ""
        while "waiting" not in text:
            line = await asyncio.wait_for(unknown.stderr.readline(), 60)
            assert line, text
            text += line.decode()
        assert "warning: no session 'nobody'" in text and "waiting" in text
    finally:
        unknown.send_signal(signal.SIGINT)
        await asyncio.wait_for(unknown.wait(), 30)


def test_rewound_events_are_shown_as_such(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "r.db")
    with sync.open_session_store(url) as store:
        store.append_events([_ev("s", data={"content": f"m{i}"}) for i in range(1, 5)])
        store.append_event(
            Event(type=EventType.HISTORY_REWOUND, session_id="s", data={"to_sequence": 2})
        )
        store.append_event(_ev("s", data={"content": "after"}))
    listed = json.loads(run_cli("--url", url, "events", "list", "s", "--json").stdout)
    assert [(e["sequence_number"], e["rewound"]) for e in listed] == [
        (1, False),
        (2, False),
        (3, True),
        (4, True),
        (5, False),
        (6, False),
    ]
    table = run_cli("--url", url, "events", "list", "s", FORCE_COLOR="1").stdout
    assert "struck-through events were rewound" in table
    struck = [line for line in table.splitlines() if re.search(r"\x1b\[[0-9;]*\b9m", line)]
    assert len(struck) >= 2, table
    visible = run_cli("--url", url, "events", "list", "s", "--visible", "--json")
    assert _seqs(visible) == [1, 2, 6]
    newest = run_cli("--url", url, "events", "list", "s", "--visible", "--limit", "2", "--json")
    assert _seqs(newest) == [2, 6] and "raise --limit" in newest.stderr
    tail = subprocess.Popen(
        [*CLI, "--url", url, "events", "tail", "s", "--json", "--last", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert tail.stdout is not None
        followed = [json.loads(tail.stdout.readline()) for _ in range(6)]
        assert [e["rewound"] for e in followed] == [False, False, True, True, False, False]
    finally:
        tail.send_signal(signal.SIGINT)
        tail.wait(30)


# ---------------------------------------------------------------- migrate


def test_migrate_reports_what_it_did_and_has_a_dry_run(tmp_path: Path, pg_schema: str) -> None:
    path = tmp_path / "m.db"
    url = f"sqlite:///{path}"
    dry = run_cli("migrate", url, "--dry-run")
    assert "would bring it to version" in dry.stdout
    assert not path.exists()  # a dry run changes nothing
    done = run_cli("migrate", url)
    assert re.search(r"migrated from no schema to version \d+", done.stdout), done.stdout
    again = run_cli("migrate", url)
    assert re.search(r"already at version \d+; nothing to do", again.stdout)
    assert "already at version" in run_cli("migrate", url, "--dry-run").stdout
    # PostgreSQL: the same report, with a real schema of this test's own
    assert "would bring it" in run_cli("migrate", pg_schema, "--dry-run").stdout
    assert "migrated from" in run_cli("migrate", pg_schema).stdout
    assert "already at version" in run_cli("migrate", pg_schema).stdout
    assert "no schema" in run_cli("migrate", "memory://").stdout


def test_a_database_without_our_schema_says_how_to_migrate(tmp_path: Path) -> None:
    import contextlib
    import sqlite3

    # A database holding other tables is never changed on open: it needs `migrate`.
    with contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    url = f"sqlite:///{tmp_path / 'other.db'}"
    proc = run_cli("--url", url, "sessions", "list", check=False)
    assert proc.returncode == 3
    assert "[migration_required]" in proc.stderr and "migrate" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "would bring it to version" in run_cli("migrate", url, "--dry-run").stdout
    assert "migrated from" in run_cli("migrate", url).stdout
    assert json.loads(run_cli("--url", url, "sessions", "list", "--json").stdout) == []


def test_migrate_then_use_a_postgres_schema(pg_schema: str) -> None:
    url = pg_schema
    proc = run_cli("--url", url, "sessions", "list", check=False)
    assert proc.returncode == 3
    assert "[migration_required]" in proc.stderr
    run_cli("migrate", url)
    run_cli("demo", "--store", url)
    listed = json.loads(run_cli("--url", url, "sessions", "list", "--json").stdout)
    assert [s["agent_id"] for s in listed] == ["code-helper"]
    events = json.loads(run_cli("--url", url, "events", "list", listed[0]["id"], "--json").stdout)
    assert [e["sequence_number"] for e in events] == list(range(1, 20))


# ---------------------------------------------------------------- export, import, copy, fork


def _sample(url: str, session_id: str = "src", count: int = 30) -> list[Event]:
    with sync.open_session_store(url) as store:
        store.save_session(Session(id=session_id, agent_id="a", tags=["x"]))
        store.save_run(Run(id=f"{session_id}_run", session_id=session_id))
        return store.append_events(
            [
                _ev(session_id, run_id=f"{session_id}_run", data={"i": i}, id=f"{session_id}_e{i}")
                for i in range(count)
            ]
        )


def test_export_then_import_round_trips_and_reimport_changes_nothing(tmp_path: Path) -> None:
    src = sqlite_url(tmp_path / "a.db")
    dst = sqlite_url(tmp_path / "b.db")
    events = _sample(src)
    out = tmp_path / "src.jsonl"
    exported = run_cli("--url", src, "export", "src", "-o", str(out))
    assert "30 event(s)" in exported.stderr
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["record"] == "header" and len(lines) == 1 + 1 + 1 + 30
    assert run_cli("--url", src, "export", "src").stdout.splitlines() == lines  # stdout form
    report = json.loads(run_cli("--url", dst, "import", str(out), "--json").stdout)
    assert report == {
        "session_id": "src",
        "events_imported": 30,
        "events_skipped": 0,
        "runs_imported": 1,
    }
    with sync.open_session_store(dst) as store:
        assert store.get_events("src") == events
    again = json.loads(run_cli("--url", dst, "import", str(out), "--json").stdout)
    assert again["events_imported"] == 0 and again["events_skipped"] == 30
    damaged = tmp_path / "bad.jsonl"
    damaged.write_text(lines[0] + "\nnot json\n")
    bad = run_cli("--url", dst, "import", str(damaged), check=False)
    assert bad.returncode == 2 and "bad.jsonl:2" in bad.stderr
    conflict = tmp_path / "conflict.jsonl"
    changed = [json.loads(x) for x in lines]
    changed[3]["event"]["id"] = "another_id"  # a different event at number 1
    conflict.write_text("\n".join(json.dumps(x) for x in changed) + "\n")
    refused = run_cli("--url", dst, "import", str(conflict), check=False)
    assert refused.returncode == 5 and "[sequence_conflict]" in refused.stderr
    assert (
        run_cli("--url", dst, "import", str(tmp_path / "none.jsonl"), check=False).returncode == 2
    )


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
def test_copy_between_backends_is_resumable(
    tmp_path: Path, target: str, request: pytest.FixtureRequest
) -> None:
    src = sqlite_url(tmp_path / "src.db")
    if target == "postgres":
        dst = request.getfixturevalue("pg_schema") + "&auto_migrate=true"
    else:
        dst = sqlite_url(tmp_path / "dst.db")
    first = _sample(src, "one", 25)
    second = _sample(src, "two", 40)
    # a copy that died part-way: the target holds the first 10 events of "two"
    partial = tmp_path / "partial.jsonl"
    lines = run_cli("--url", src, "export", "two").stdout.splitlines()
    partial.write_text("\n".join(lines[: 3 + 10]) + "\n")
    run_cli("--url", dst, "import", str(partial))
    proc = run_cli("copy", "--from", src, "--to", dst, "--all", "--page-size", "7", "--json")
    reports = {r["session_id"]: r for r in json.loads(proc.stdout)}
    assert reports["one"]["events_imported"] == 25
    assert reports["two"]["events_imported"] == 30  # only what was missing
    with sync.open_session_store(dst) as store:
        assert store.get_events("one") == first
        assert store.get_events("two") == second
        assert store.get_latest_sequence("two") == 40
    rerun = json.loads(run_cli("copy", "--from", src, "--to", dst, "one", "two", "--json").stdout)
    assert [r["events_imported"] for r in rerun] == [0, 0]
    # and back, by name, with the human report
    back = sqlite_url(tmp_path / "back.db")
    text = run_cli("copy", "--from", dst, "--to", back, "two").stdout
    assert "two: 40 event(s) copied" in text
    with sync.open_session_store(back) as store:
        assert store.get_events("two") == second


def test_fork_copies_the_visible_history(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "fork.db")
    _sample(url, "src", 6)
    with sync.open_session_store(url) as store:
        store.append_event(
            Event(type=EventType.HISTORY_REWOUND, session_id="src", data={"to_sequence": 4})
        )
    forked = json.loads(run_cli("--url", url, "fork", "src", "--json").stdout)
    assert forked["session"]["parent_session_id"] == "src"
    assert forked["latest_sequence"] == 4  # events 5 and 6 were rewound
    at = json.loads(run_cli("--url", url, "fork", "src", "--at", "2", "--json").stdout)
    assert at["latest_sequence"] == 2
    assert at["session"]["metadata"]["forked_at_sequence"] == 2
    retry = json.loads(run_cli("--url", url, "fork", "src", "--at", "2", "--json").stdout)
    assert retry["session"]["id"] == at["session"]["id"]  # idempotent
    named = run_cli("--url", url, "fork", "src", "--new-id", "mine")
    assert "into mine" in named.stdout
    beyond = run_cli("--url", url, "fork", "src", "--at", "99", check=False)
    assert beyond.returncode == 2 and "beyond" in beyond.stderr


def test_sessions_list_pages_by_cursor_where_the_backend_can(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The keyset path (contract 7.2), in-process on the memory backend, which has it."""
    from agent_session_store import cli
    from agent_session_store.codec import encode_session
    from agent_session_store.memory import InMemorySessionStore

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sessions = [
        Session(id=f"s{i:02d}", agent_id="a", updated_at=t0 + timedelta(days=1, minutes=-i))
        for i in range(60)
    ]

    class Filled(InMemorySessionStore):
        async def _open(self) -> None:
            await super()._open()
            for s in sessions:
                await self._save_session(s, encode_session(s))

    monkeypatch.setattr(cli, "_open", lambda url: Filled())
    monkeypatch.setenv("COLUMNS", "300")
    assert cli.main(["sessions", "list", "--json"]) == 0
    first = capsys.readouterr()
    assert [s["id"] for s in json.loads(first.out)] == [f"s{i:02d}" for i in range(50)]
    hint = re.search(
        r"50 of 60 session\(s\), newest activity first — next: --cursor (\S+)", first.err
    )
    assert hint, first.err
    assert cli.main(["sessions", "list", "--json", "--cursor", hint.group(1)]) == 0
    rest = capsys.readouterr()
    assert [s["id"] for s in json.loads(rest.out)] == [f"s{i:02d}" for i in range(50, 60)]
    assert "next:" not in rest.err
