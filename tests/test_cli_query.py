"""The query, summary, maintenance and health commands (contract 7 and 8), run as a real
subprocess against real SQLite files: for people (tables) and for scripts (``--json``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent_session_store import sync
from agent_session_store.cli import HEALTH_PROBLEMS
from agent_session_store.models import Event, EventType, Run, RunStatus, Session, SessionStatus
from agent_session_store.querying import QueryAndMaintenance
from agent_session_store.sqlite import SQLiteSessionStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLI = [sys.executable, "-m", "agent_session_store"]

pytestmark = pytest.mark.skipif(
    SQLiteSessionStore._search_sessions is QueryAndMaintenance._search_sessions,
    reason="the SQLite backend does not answer queries yet",
)


def run_cli(*args: str, check: bool = True, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}  # tables are not squeezed
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}?auto_migrate=true"


def dump(path: Path) -> list[str]:
    """The database's content as SQL: what a command must leave unchanged."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return list(conn.iterdump())


def cli_json(url: str, *args: str) -> Any:
    return json.loads(run_cli("--url", url, *args, "--json").stdout)


def refused(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A command that must fail cleanly: a message on stderr, no traceback."""
    proc = run_cli("--url", url, *args, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _ids(url: str, *args: str) -> list[str]:
    return [s["id"] for s in cli_json(url, "sessions", "list", *args)]


def _sessions(url: str) -> None:
    """Six sessions, each filter picking a different subset; activity order differs from
    creation order."""
    specs = [
        ("s0", "alpha", SessionStatus.ACTIVE, ["x"]),
        ("s1", "alpha", SessionStatus.COMPLETED, ["x", "y"]),
        ("s2", "beta", SessionStatus.FAILED, ["y"]),
        ("s3", "beta", SessionStatus.COMPLETED, []),
        ("s4", "alpha", SessionStatus.PAUSED, ["x", "y", "z"]),
        ("s5", "gamma", SessionStatus.COMPLETED, ["x"]),
    ]
    with sync.open_session_store(url) as store:
        for i, (sid, agent, status, tags) in enumerate(specs):
            store.save_session(
                Session(
                    id=sid,
                    agent_id=agent,
                    status=status,
                    tags=tags,
                    created_at=T0 + timedelta(days=i),
                    updated_at=T0 + timedelta(days=10 + (0, 4, 1, 5, 2, 3)[i]),
                )
            )


# ---------------------------------------------------------------- sessions list


def test_sessions_list_filters_orders_and_counts(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "s.db")
    _sessions(url)
    assert _ids(url) == ["s3", "s1", "s5", "s4", "s2", "s0"]  # newest activity first
    assert _ids(url, "--order", "created_at_asc") == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert _ids(url, "--order", "created_at_desc") == ["s5", "s4", "s3", "s2", "s1", "s0"]
    assert _ids(url, "--status", "completed") == ["s3", "s1", "s5"]
    assert _ids(url, "--status", "failed", "--status", "active") == ["s2", "s0"]  # any of
    assert _ids(url, "--agent", "alpha") == ["s1", "s4", "s0"]
    assert _ids(url, "--tag", "x", "--tag", "y") == ["s1", "s4"]  # all of
    assert _ids(url, "--tag", "x", "--agent", "alpha", "--status", "paused") == ["s4"]
    # time bounds are inclusive; a time without an offset is UTC, as the tables show
    assert _ids(url, "--created-after", "2026-01-04", "--order", "created_at_asc") == [
        "s3",
        "s4",
        "s5",
    ]
    assert _ids(url, "--created-before", "2026-01-02T00:00:00Z") == ["s1", "s0"]
    assert _ids(url, "--updated-after", "2026-01-15T00:00:00+00:00") == ["s3", "s1"]
    assert _ids(url, "--updated-before", "2026-01-13") == ["s4", "s2", "s0"]  # s4: Jan 13 00:00
    assert _ids(url, "--updated-after", "1d") == []  # a duration before now
    assert _ids(url, "--updated-after", "3650d") == _ids(url)
    table = run_cli("--url", url, "sessions", "list", "--status", "completed").stdout
    assert "3 of 3 session(s), newest activity first" in table
    assert "next:" not in table
    uncounted = run_cli("--url", url, "sessions", "list", "--no-total", "--order", "created_at_asc")
    assert "6 session(s), oldest first" in uncounted.stdout and " of " not in uncounted.stdout


def test_sessions_list_pages_by_cursor_through_every_ordering(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "p.db")
    with sync.open_session_store(url) as store:
        for i in range(23):
            store.save_session(
                Session(
                    id=f"p{i:02d}",
                    agent_id="a",
                    created_at=T0 + timedelta(minutes=i // 2),  # ties: broken by id
                    updated_at=T0 + timedelta(hours=1, minutes=-(i // 3)),
                )
            )
    for order in ("updated_at_desc", "created_at_asc", "created_at_desc"):
        everything = _ids(url, "--order", order)
        assert sorted(everything) == [f"p{i:02d}" for i in range(23)]
        seen: list[str] = []
        cursor: list[str] = []
        for _ in range(10):
            proc = run_cli(
                "--url", url, "sessions", "list", "--order", order, "--limit", "5", "--json",
                *cursor,
            )  # fmt: skip
            seen += [s["id"] for s in json.loads(proc.stdout)]
            hint = re.search(r"of 23 session\(s\).* — next: --cursor (\S+)", proc.stderr)
            if hint is None:
                break
            cursor = ["--cursor", hint.group(1)]
        assert seen == everything, order  # each exactly once, in the ordering
        assert len(seen) == 23
    # 20 = 4 full pages: the fourth says nothing follows (no empty fifth page)
    page = run_cli("--url", url, "sessions", "list", "--limit", "20")
    assert "20 of 23" in page.stdout and "next: --cursor" in page.stdout
    assert "next:" not in run_cli("--url", url, "sessions", "list", "--limit", "23").stdout


def test_include_deleted_shows_sessions_maintain_soft_deleted(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "d.db")
    _sessions(url)
    policy = tmp_path / "policy.toml"
    policy.write_text("max_completed_session_age_days = 1\nhard_delete_after_days = 30\n")
    now = "2026-01-16T12:00:00Z"  # s0 (active) and s4 (paused) are exempt by default
    report = cli_json(url, "maintain", "--policy-file", str(policy), "--now", now)
    assert report["sessions_soft_deleted"] == 3  # s1, s2, s5: idle since before Jan 15 12:00
    assert _ids(url) == ["s3", "s4", "s0"]
    assert _ids(url, "--include-deleted") == ["s3", "s1", "s5", "s4", "s2", "s0"]
    deleted = {
        s["id"]: s["deleted_at"] for s in cli_json(url, "sessions", "list", "--include-deleted")
    }
    assert deleted["s1"] == deleted["s2"] == deleted["s5"] == "2026-01-16T12:00:00.000000Z"
    assert deleted["s3"] is None
    table = run_cli("--url", url, "sessions", "list", "--include-deleted").stdout
    assert re.search(r"s1\s*│\s*alpha\s*│\s*completed \(deleted\)", table), table
    assert re.search(r"s3\s*│\s*beta\s*│\s*completed\s*│", table), table


# ---------------------------------------------------------------- bad arguments


def test_every_bad_argument_is_a_clear_usage_error(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "b.db")
    _sessions(url)
    before = dump(tmp_path / "b.db")

    def usage(*args: str, says: str) -> None:
        proc = refused(url, *args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert says in proc.stderr, (args, proc.stderr)

    usage("sessions", "list", "--created-after", "yesterday", says="neither an ISO-8601 time")
    usage("sessions", "list", "--updated-before", "2026-13-01", says="'2026-13-01' is neither")
    usage("sessions", "list", "--limit", "0", says="0 is not from 1 to 1000")
    usage("sessions", "list", "--limit", "1001", says="1001 is not from 1 to 1000")
    usage("sessions", "list", "--order", "name", says="invalid choice: 'name'")
    usage("sessions", "list", "--status", "done", says="invalid choice: 'done'")
    usage("sessions", "list", "--tag", "x", "--offset", "5", says="--offset cannot be combined")
    usage("sessions", "list", "--cursor", "not-a-cursor", says="[invalid_cursor]")
    first = run_cli("--url", url, "sessions", "list", "--limit", "2")
    cursor = re.search(r"--cursor (\S+)", first.stdout)
    assert cursor
    usage(
        "sessions", "list", "--order", "created_at_asc", "--cursor", cursor.group(1),
        says="not by search_sessions(order_by='created_at_asc')",
    )  # fmt: skip
    usage("events", "search", "--cursor", cursor.group(1), says="[invalid_cursor]")
    usage("events", "search", "--type", "bogus", says="families")
    usage("events", "search", "--since", "soon", says="neither an ISO-8601 time")
    usage("events", "search", "--order", "random", says="invalid choice")
    usage("usage", "--until", "later", says="neither an ISO-8601 time")
    usage("cost", "--pricing-file", str(tmp_path / "none.toml"), says="no such pricing file")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[openai\ninput = 1\n")
    usage("cost", "--pricing-file", str(bad_toml), says="bad.toml is not valid TOML")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[openai."gpt-5"]\ninput = -1\noutput = 2\n')
    usage("cost", "--pricing-file", str(wrong), says="pricing['openai']['gpt-5'] must be")
    usage("maintain", says="the following arguments are required: --policy-file")
    usage("maintain", "--policy-file", str(tmp_path / "none.toml"), says="no such policy file")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("max_age_days = 3\n")
    usage("maintain", "--policy-file", str(unknown), says="unknown retention setting(s) max_age")
    negative = tmp_path / "negative.toml"
    negative.write_text("max_completed_session_age_days = 0\n")
    usage("maintain", "--policy-file", str(negative), says="must be a positive int or None")
    status = tmp_path / "status.toml"
    status.write_text('exempt_statuses = ["forever"]\n')
    usage("maintain", "--policy-file", str(status), says="[invalid_status]")
    usage("maintain", "--policy-file", str(status), "--now", "then", says="neither an ISO")
    usage("sessions", "stats", says="the following arguments are required: SESSION")
    assert dump(tmp_path / "b.db") == before  # nothing was written
    assert _ids(url, "--include-deleted") == _ids(url)  # nothing soft-deleted either
    missing = refused(url, "sessions", "stats", "nope")
    assert missing.returncode == 1 and "[session_not_found]" in missing.stderr


# ---------------------------------------------------------------- stats, usage, cost


def _runs(url: str) -> None:
    """Two sessions of two agents with runs of three providers, costed and not."""
    with sync.open_session_store(url) as store:
        store.save_session(Session(id="a1", agent_id="alpha"))
        store.save_session(Session(id="b1", agent_id="beta"))
        runs = [
            # id, session, provider, model, in, out, cost, day
            ("r1", "a1", "anthropic", "claude-sonnet-4", 1000, 200, None, 1),
            ("r2", "a1", "anthropic", "claude-sonnet-4", 3000, 100, 0.5, 2),
            ("r3", "a1", "openai", "gpt-4o", 2000, 1000, None, 3),
            ("r4", "b1", "openai", "gpt-4o", 4000, 0, None, 4),
            ("r5", "b1", "acme", "rocket-1", 10_000, 5000, None, 5),
        ]
        for rid, sid, provider, model, inp, out, cost, day in runs:
            store.save_run(
                Run(
                    id=rid,
                    session_id=sid,
                    status=RunStatus.COMPLETED if rid != "r3" else RunStatus.FAILED,
                    provider=provider,
                    provider_metadata={"model": model},
                    token_usage={"input_tokens": inp, "output_tokens": out},
                    cost_usd=cost,
                    started_at=T0 + timedelta(days=day),
                )
            )
        store.append_events(
            [
                Event(
                    type=EventType.MESSAGE_SENT, session_id="a1", timestamp=T0 + timedelta(hours=h)
                )
                for h in (1, 2, 5)
            ]
        )


def test_sessions_stats_for_people_and_scripts(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "st.db")
    _runs(url)
    stats = cli_json(url, "sessions", "stats", "a1")
    assert stats == {
        "session_id": "a1",
        "event_count": 3,
        "run_count": 3,
        "token_totals": {"input_tokens": 6000, "output_tokens": 1300, "total_tokens": 7300},
        "cost_usd": 0.5,
        "providers_used": ["anthropic", "openai"],
        "first_event_at": "2026-01-01T01:00:00.000000Z",
        "last_event_at": "2026-01-01T05:00:00.000000Z",
        "status_counts": {"completed": 2, "failed": 1},
        "latest_sequence": 3,
    }
    table = run_cli("--url", url, "sessions", "stats", "a1").stdout
    for text in (
        "session a1",
        "3 (completed 2, failed 1)",
        "in=6000 out=1300 total=7300",
        "0.5000",
        "anthropic, openai",
        "2026-01-01 05:00:00.000",
    ):
        assert text in table, (text, table)
    empty = run_cli("--url", url, "sessions", "stats", "b1").stdout
    assert "none recorded" in empty  # b1's runs carry no cost_usd


def test_usage_per_provider_with_every_filter(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "u.db")
    _runs(url)
    usage = cli_json(url, "usage")
    assert (usage["run_count"], usage["total_input_tokens"], usage["total_tokens"]) == (
        5,
        20_000,
        26_300,
    )
    assert usage["by_provider"]["openai"] == {
        "input_tokens": 6000,
        "output_tokens": 1000,
        "total_tokens": 7000,
        "run_count": 2,
    }

    def runs(*args: str) -> int:
        count: int = cli_json(url, "usage", *args)["run_count"]
        return count

    assert runs("--session", "a1") == 3
    assert runs("--agent", "beta") == 2
    assert runs("--provider", "openai") == 2
    assert runs("--since", "2026-01-04") == 3  # inclusive: r3 starts at Jan 4 00:00
    assert runs("--until", "2026-01-04T00:00:00Z") == 3
    assert runs("--agent", "alpha", "--provider", "openai", "--since", "2026-01-04") == 1
    assert runs("--agent", "nobody") == 0
    table = run_cli("--url", url, "usage", "--agent", "alpha").stdout
    assert "token usage by provider — agent alpha" in table
    assert re.search(r"anthropic\s*│\s*2\s*│\s*4000\s*│\s*300\s*│\s*4300", table), table
    assert re.search(r"total\s*│\s*3\s*│\s*6000\s*│\s*1300\s*│\s*7300", table), table


def test_cost_per_provider_and_model_with_a_pricing_file(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "c.db")
    _runs(url)
    cost = cli_json(url, "cost")
    # r1 priced by the default table (3 / 15 per million), r2 its cost_usd, r3 + r4 gpt-4o at
    # 2.5 / 10; acme's rocket-1 is in no table
    r1 = (1000 * 3 + 200 * 15) / 1e6
    gpt = (6000 * 2.5 + 1000 * 10) / 1e6
    assert cost["unmapped_runs"] == 1
    assert cost["total_cost_usd"] == pytest.approx(r1 + 0.5 + gpt)
    assert cost["by_provider"]["anthropic"]["run_count"] == 2
    assert cost["by_model"]["gpt-4o"]["cost_usd"] == pytest.approx(gpt)
    table = run_cli("--url", url, "cost")
    assert "cost by provider — every run" in table.stdout and "cost by model" in table.stdout
    assert re.search(r"claude-sonnet-4\s*│\s*4000\s*│\s*300\s*│\s*0\.5060", table.stdout)
    assert "1 run(s) have no cost_usd and no price" in table.stderr
    assert "--pricing-file" in table.stderr
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[acme."rocket-1"]\ninput = 1.0\noutput = 2.0\n\n[openai."gpt-4o"]\ninput = 0\noutput = 0\n'
    )
    priced = cli_json(url, "cost", "--pricing-file", str(prices))
    assert priced["unmapped_runs"] == 0
    assert priced["by_provider"]["acme"] == {"cost_usd": pytest.approx(0.02), "run_count": 1}
    assert priced["by_provider"]["openai"]["cost_usd"] == 0  # the file overrides the default
    only = cli_json(url, "cost", "--pricing-file", str(prices), "--session", "b1")
    assert only["run_count"] == 2 and only["total_cost_usd"] == pytest.approx(0.02)
    assert cli_json(url, "cost", "--provider", "anthropic", "--until", "2026-01-02T12:00:00Z")[
        "total_cost_usd"
    ] == pytest.approx(r1)
    quiet = run_cli("--url", url, "cost", "--pricing-file", str(prices))
    assert "no price" not in quiet.stderr


# ---------------------------------------------------------------- events search


def _events(url: str) -> list[Event]:
    with sync.open_session_store(url) as store:
        stored: list[Event] = []
        for n, sid in enumerate(("e1", "e2", "e3")):
            store.save_session(Session(id=sid, agent_id="a"))
            stored += store.append_events(
                [
                    Event(
                        type=(EventType.TOOL_CALL_STARTED, EventType.MESSAGE_SENT)[i % 2],
                        session_id=sid,
                        id=f"{sid}_{i}",
                        run_id=f"{sid}_run" if i < 2 else None,
                        timestamp=T0 + timedelta(minutes=3 * i + n),  # sessions interleave
                        provider=("openai", "anthropic")[n % 2],
                        correlation_id="corr" if i == 3 else None,
                        data={"content": f"{sid} #{i}"},
                    )
                    for i in range(5)
                ]
            )
        return stored


def test_events_search_across_sessions_with_filters(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "e.db")
    stored = _events(url)

    def ids(*args: str) -> list[str]:
        return [e["id"] for e in cli_json(url, "events", "search", *args)]

    by_time = [e.id for e in sorted(stored, key=lambda e: (e.timestamp, e.id))]
    assert ids() == by_time
    assert ids("--order", "timestamp_desc") == by_time[::-1]
    by_seq = [e.id for e in sorted(stored, key=lambda e: (e.sequence_number or 0, e.id))]
    assert ids("--order", "sequence_asc") == by_seq
    assert ids("--session", "e1", "--session", "e3") == [
        i for i in by_time if i[:2] in ("e1", "e3")
    ]
    assert ids("--type", "tool") == [i for i in by_time if int(i[-1]) % 2 == 0]
    assert ids("--type", "message_sent", "--session", "e2") == ["e2_1", "e2_3"]
    assert ids("--run", "e2_run") == ["e2_0", "e2_1"]
    assert ids("--provider", "anthropic") == [i for i in by_time if i.startswith("e2")]
    assert ids("--correlation-id", "corr") == ["e1_3", "e2_3", "e3_3"]
    assert ids("--since", "2026-01-01T00:12:00Z") == ["e1_4", "e2_4", "e3_4"]
    assert ids("--until", "2026-01-01T00:01:00Z") == ["e1_0", "e2_0"]
    table = run_cli("--url", url, "events", "search", "--session", "e2", "--total").stdout
    assert "5 of 5 event(s), timestamp asc" in table
    assert "e2 #3" in table and "tool_call_started" in table and "r1 = e2_run" in table
    narrow = run_cli("--url", url, "events", "search", "--type", "message_sent", columns=80).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80, narrow
    assert "e1 #1" in narrow and "s2 = e2" in narrow  # short labels, full ids in the legend


def test_events_search_pages_by_cursor(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "ep.db")
    stored = _events(url)
    for order in ("timestamp_asc", "timestamp_desc", "sequence_asc"):
        seen: list[str] = []
        cursor: list[str] = []
        for _ in range(10):
            proc = run_cli(
                "--url", url, "events", "search", "--order", order, "--limit", "4", "--total",
                "--json", *cursor,
            )  # fmt: skip
            seen += [e["id"] for e in json.loads(proc.stdout)]
            assert "of 15 event(s)" in proc.stderr
            hint = re.search(r"next: --cursor (\S+)", proc.stderr)
            if hint is None:
                break
            cursor = ["--cursor", hint.group(1)]
        assert sorted(seen) == sorted(e.id for e in stored) and len(seen) == 15, order
    last = run_cli("--url", url, "events", "search", "--limit", "15")
    assert "next:" not in last.stdout
    assert "next: --cursor" in run_cli("--url", url, "events", "search", "--limit", "14").stdout


# ---------------------------------------------------------------- maintain


def _old_store(url: str) -> None:
    with sync.open_session_store(url) as store:
        for i, status in enumerate((SessionStatus.COMPLETED, SessionStatus.COMPLETED)):
            store.save_session(Session(id=f"old{i}", agent_id="a", status=status))
        store.save_session(
            Session(id="pinned", agent_id="a", status=SessionStatus.COMPLETED, tags=["pinned"])
        )
        store.save_session(Session(id="busy", agent_id="a", status=SessionStatus.ACTIVE))
        store.append_events(
            [Event(type=EventType.MESSAGE_STREAMED, session_id="busy") for _ in range(8)]
            + [Event(type=EventType.RUN_STARTED, session_id="busy")]
        )


def test_maintain_dry_run_changes_nothing_then_applies_the_policy(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "m.db")
    _old_store(url)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "# sessions idle 7 days go, 1 day later for good\n"
        "max_completed_session_age_days = 7\n"
        "hard_delete_after_days = 1\n"
        "max_events_per_session = 3\n"
        'exempt_tags = ["pinned"]\n'
    )
    later = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = dump(tmp_path / "m.db")
    dry = cli_json(url, "maintain", "--policy-file", str(policy), "--dry-run", "--now", later)
    assert (dry["dry_run"], dry["sessions_soft_deleted"], dry["events_pruned"]) == (True, 2, 6)
    assert dry["errors"] == [] and dry["now"].startswith(later[:19])
    assert dry["policy"]["max_events_per_session"] == 3
    assert dump(tmp_path / "m.db") == before  # a dry run writes nothing
    table = run_cli(
        "--url", url, "maintain", "--policy-file", str(policy), "--dry-run", "--now", later
    ).stdout
    assert "dry run: nothing was changed" in table
    assert re.search(r"sessions soft-deleted \(would be\)\s*│\s*2", table), table
    assert dump(tmp_path / "m.db") == before
    done = run_cli("--url", url, "maintain", "--policy-file", str(policy), "--now", later)
    assert re.search(r"sessions soft-deleted \(were\)\s*│\s*2", done.stdout), done.stdout
    assert re.search(r"events pruned \(were\)\s*│\s*6", done.stdout), done.stdout
    assert sorted(_ids(url)) == ["busy", "pinned"]
    with sync.open_session_store(url) as store:
        assert [e.type for e in store.get_events("busy")][-1] == EventType.RUN_STARTED
        assert store.get_latest_sequence("busy") == 9  # the counter never moves back
    much_later = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    hard = cli_json(url, "maintain", "--policy-file", str(policy), "--now", much_later)
    assert (hard["sessions_soft_deleted"], hard["sessions_hard_deleted"]) == (0, 2)
    assert sorted(_ids(url, "--include-deleted")) == ["busy", "pinned"]
    defaults = tmp_path / "empty.toml"
    defaults.write_text("")
    assert (
        cli_json(url, "maintain", "--policy-file", str(defaults))["policy"][
            "max_completed_session_age_days"
        ]
        == 90
    )


# ---------------------------------------------------------------- health


def test_health_exits_non_zero_and_lists_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    url = sqlite_url(path)
    with sync.open_session_store(url) as store:
        store.save_session(Session(id="s", agent_id="a"))
        store.save_run(Run(id="r", session_id="s"))
        store.append_events([Event(type=EventType.MESSAGE_SENT, session_id="s") for _ in range(2)])
    ok = run_cli("--url", url, "health")
    assert "healthy: no problems found" in ok.stdout
    assert cli_json(url, "health") == {"healthy": True, "problems": []}
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE seqs SET last_seq = 1 WHERE session_id = 's'")
        conn.execute("UPDATE runs SET agent_id = 'z'")
    sick = refused(url, "health")
    assert sick.returncode == HEALTH_PROBLEMS == 6
    assert "2 problem(s)" in sick.stdout
    assert "session 's': counter 1 is below event 2" in sick.stdout
    assert "run 'r': its agent_id copy differs" in sick.stdout
    as_json = refused(url, "health", "--json")
    assert as_json.returncode == HEALTH_PROBLEMS
    found = json.loads(as_json.stdout)
    assert found["healthy"] is False and len(found["problems"]) == 2


# ---------------------------------------------------------------- memory, in-process


def test_every_command_answers_on_the_memory_backend(capsys: pytest.CaptureFixture[str]) -> None:
    """memory:// lives in one process: each command here opens an empty store of its own,
    through the real parser and main()."""
    from agent_session_store.cli import main

    def run(*args: str) -> Any:
        assert main(["--url", "memory://", *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    assert run("sessions", "list", "--tag", "x", "--updated-after", "1h") == []
    assert run("events", "search", "--type", "tool", "--order", "timestamp_desc") == []
    assert run("usage")["run_count"] == 0
    assert run("cost", "--provider", "openai")["total_cost_usd"] == 0
    assert run("health") == {"healthy": True, "problems": []}
    assert main(["--url", "memory://", "sessions", "stats", "nope"]) == 1
    assert "[session_not_found]" in capsys.readouterr().err
    assert main(["--url", "memory://", "sessions", "list", "--cursor", "x"]) == 2
    assert "[invalid_cursor]" in capsys.readouterr().err
