"""The ``agent-session-store`` command line: look into a store, follow a session live, migrate.

Output is for people (tables and timelines via rich) unless ``--json`` is given, which prints
JSON meant for scripts: one array for lists, one object per line for ``events tail``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import StoreError, redact
from .models import Event, EventType, ExecutionResult, Run, RunStatus, Session, SessionStatus
from .urls import open_session_store

__all__ = ["main"]

DEFAULT_URL = "sqlite:///agent-sessions.db"
URL_ENV = "AGENT_SESSION_STORE_URL"

_FAMILY_STYLE = {
    "session": "bold magenta",
    "run": "bold blue",
    "message": "green",
    "tool": "yellow",
    "error": "bold red",
    "usage": "cyan",
    "workspace": "blue",
    "policy": "red",
    "approval": "magenta",
}


def _out() -> Console:
    # Piped output (CI logs, less) gets a usable width instead of rich's 80-column fallback.
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return Console(highlight=False, soft_wrap=False)
    return Console(highlight=False, soft_wrap=False, width=140, height=50)


def _summary(event: Event, width: int = 90) -> str:
    """One line saying what happened, from the fields agents usually put in ``data``."""
    d = event.data
    parts: list[str] = []
    role = d.get("role")
    content = d.get("content", d.get("text", d.get("delta")))
    if isinstance(content, str):
        parts.append(f"{role}: {content}" if isinstance(role, str) else content)
    tool = d.get("tool", d.get("tool_name", d.get("name")))
    if isinstance(tool, str):
        args = d.get("arguments", d.get("input"))
        result = d.get("result", d.get("output"))
        text = tool
        if args is not None:
            text += f"({json.dumps(args, ensure_ascii=False)})"
        if result is not None:
            text += f" → {json.dumps(result, ensure_ascii=False)}"
        parts.append(text)
    usage = {k: d[k] for k in ("input_tokens", "output_tokens", "total_tokens") if k in d}
    if usage:
        parts.append(" ".join(f"{k.split('_')[0]}={v}" for k, v in usage.items()))
    if not parts and d:
        parts.append(json.dumps(d, ensure_ascii=False, separators=(",", ":")))
    line = " ".join(parts).replace("\n", " ")
    return line if len(line) <= width else line[: width - 1] + "…"


def _event_row(event: Event) -> list[Text | str]:
    style = _FAMILY_STYLE.get(event.type.family, "")
    return [
        str(event.sequence_number),
        event.timestamp.strftime("%H:%M:%S.%f")[:-3],
        Text(event.type.value, style=style),
        event.run_id or "",
        _summary(event),
    ]


def _timeline(title: str, events: list[Event]) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    table.add_column("seq", justify="right", style="dim", no_wrap=True)
    table.add_column("time (UTC)", style="dim", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("run", style="dim", overflow="ellipsis", max_width=12, no_wrap=True)
    table.add_column("what", overflow="fold")
    for event in events:
        table.add_row(*_event_row(event))
    return table


def _sessions_table(sessions: list[Session]) -> Table:
    table = Table(title=f"{len(sessions)} session(s)", title_justify="left")
    for col in ("id", "agent", "status", "created (UTC)", "updated (UTC)", "tags"):
        table.add_column(col, no_wrap=col != "tags")
    for s in sessions:
        table.add_row(
            s.id,
            s.agent_id,
            s.status.value,
            s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            s.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            ", ".join(s.tags),
        )
    return table


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


# ---------------------------------------------------------------- commands


async def _sessions_list(args: argparse.Namespace) -> int:
    async with open_session_store(args.url) as store:
        sessions = await store.list_sessions(
            status=args.status, agent_id=args.agent, limit=args.limit, offset=args.offset
        )
    if args.json:
        _print_json([s.to_dict() for s in sessions])
    else:
        _out().print(_sessions_table(sessions))
    return 0


async def _sessions_show(args: argparse.Namespace) -> int:
    async with open_session_store(args.url) as store:
        session = await store.get_session(args.session_id)
        runs = await store.list_runs(args.session_id)
        latest = await store.get_latest_sequence(args.session_id)
    if args.json:
        _print_json({"session": session.to_dict(), "runs": [r.to_dict() for r in runs]})
        return 0
    console = _out()
    console.print(_sessions_table([session]))
    table = Table(title=f"{len(runs)} run(s), {latest} event(s)", title_justify="left")
    for col in ("run", "status", "started (UTC)", "ended", "turns", "tokens", "cost $"):
        table.add_column(col)
    for r in runs:
        table.add_row(
            r.id,
            r.status.value,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            "" if r.ended_at is None else r.ended_at.strftime("%H:%M:%S"),
            str(r.turn_count),
            " ".join(f"{k}={v}" for k, v in r.token_usage.items()),
            "" if r.cost_usd is None else f"{r.cost_usd:.4f}",
        )
    console.print(table)
    return 0


def _event_filters(args: argparse.Namespace) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if args.run:
        filters["run_id"] = args.run
    if args.type:
        filters["type"] = args.type
    return filters


async def _events_list(args: argparse.Namespace) -> int:
    async with open_session_store(args.url) as store:
        events = await store.get_events(
            args.session_id, after=args.after, limit=args.limit, **_event_filters(args)
        )
    if args.json:
        _print_json([e.to_dict() for e in events])
    else:
        _out().print(_timeline(f"session {args.session_id}: {len(events)} event(s)", events))
    return 0


async def _events_tail(args: argparse.Namespace) -> int:
    """Follow a session live; long-poll keeps this idle (no busy polling) between events."""
    console = _out()
    async with open_session_store(args.url) as store:
        after = args.after
        if after is None:
            latest = await store.get_latest_sequence(args.session_id)
            after = max(0, latest - args.last)
        if not args.json:
            console.print(
                f"[dim]following session {args.session_id} after #{after} (Ctrl-C to stop)[/dim]"
            )
        async for event in store.stream_events(
            args.session_id, after=after, **_event_filters(args)
        ):
            if args.json:
                print(json.dumps(event.to_dict(), ensure_ascii=False), flush=True)
            else:
                row = _event_row(event)
                line = Text.assemble(
                    (f"{row[0]:>5} ", "dim"), (f"{row[1]}  ", "dim"), row[2], "  ", str(row[4])
                )
                console.print(line)
    return 0


async def _migrate(args: argparse.Namespace) -> int:
    store = open_session_store(args.url)
    await store.migrate()
    await store.close()
    print(f"schema of {redact(args.url)} is up to date")
    return 0


async def simulate_agent_session(store: Any) -> str:
    """Write what one agent execution looks like: a run with messages, tools, usage, results."""
    session = Session(
        agent_id="code-helper",
        status=SessionStatus.ACTIVE,
        metadata={"repo": "acme/widgets", "user": "ada"},
        context={"system_prompt": "You are a careful coding assistant."},
        tags=["demo", "coding"],
    )
    await store.save_session(session)
    run = Run(
        session_id=session.id,
        status=RunStatus.RUNNING,
        input={"prompt": "Why does test_parse fail on empty input?"},
        provider="anthropic",
    )
    await store.save_run(run)

    def event(kind: EventType, **data: Any) -> Event:
        return Event(type=kind, session_id=session.id, run_id=run.id, data=data)

    await store.append_event(event(EventType.SESSION_STARTED))
    await store.append_event(event(EventType.RUN_STARTED, model="claude"))
    await store.append_event(
        event(EventType.MESSAGE_SENT, role="user", content=run.input["prompt"] if run.input else "")
    )
    for chunk in ("Let me look at ", "the parser and ", "run the failing test."):
        await store.append_event(event(EventType.MESSAGE_STREAMED, role="assistant", delta=chunk))
    tool_calls = [
        ("read_file", {"path": "widgets/parse.py"}, {"lines": 88}),
        ("run_tests", {"select": "test_parse"}, {"failed": 1, "passed": 11}),
        ("apply_patch", {"file": "widgets/parse.py", "hunks": 1}, {"ok": True}),
        ("run_tests", {"select": "test_parse"}, {"failed": 0, "passed": 12}),
    ]
    for name, arguments, result in tool_calls:
        await store.append_event(event(EventType.TOOL_CALL_STARTED, tool=name, arguments=arguments))
        await store.append_event(event(EventType.TOOL_CALL_COMPLETED, tool=name, result=result))
    answer = "parse() indexed line[0] before checking for empty input; fixed and tests pass."
    usage = {"input_tokens": 5120, "output_tokens": 412}
    finished = run.with_status(RunStatus.COMPLETED).replace(
        output={"answer": answer}, turn_count=3, token_usage=usage, cost_usd=0.0215
    )
    # The end of a run is flushed as one atomic unit: run result, session state, last events.
    await store.flush(
        ExecutionResult(
            session=session.with_status(SessionStatus.COMPLETED),
            run=finished,
            events=[
                event(EventType.MESSAGE_RECEIVED, role="assistant", content=answer),
                event(EventType.TOKEN_USAGE_UPDATED, **usage),
                event(EventType.TURN_COMPLETED, turn=3),
                event(EventType.RUN_COMPLETED, status="completed"),
                event(EventType.SESSION_COMPLETED),
            ],
            provider_metadata={"model": "claude"},
        )
    )
    return session.id


async def _demo(args: argparse.Namespace) -> int:
    url = args.url_override
    if url is None:
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{args.db}?auto_migrate=true"
    console = _out()
    async with open_session_store(url) as store:
        session_id = await simulate_agent_session(store)
        session = await store.get_session(session_id)
        runs = await store.list_runs(session_id)
        events = await store.get_events(session_id)
    if args.json:
        _print_json(
            {
                "session": session.to_dict(),
                "runs": [r.to_dict() for r in runs],
                "events": [e.to_dict() for e in events],
            }
        )
        return 0
    console.print(f"[bold]Simulated agent session written to[/bold] {redact(url)}")
    console.print(_sessions_table([session]))
    for r in runs:
        console.print(
            f"run [bold]{r.id}[/bold]: {r.status.value}, {r.turn_count} turns, "
            f"tokens {r.token_usage}, cost ${r.cost_usd}"
        )
    console.print(_timeline(f"timeline of {session_id}", events))
    if args.url_override is None:
        console.print(
            f"[dim]Look again with: agent-session-store --url 'sqlite:///{args.db}' "
            f"events list {session_id}[/dim]"
        )
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-session-store",
        description="Inspect and follow agent sessions stored by agent-session-store.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"session store URL (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="write a simulated agent session and show it")
    demo.add_argument("--db", default="demo-data/demo.db", help="SQLite file to write")
    demo.add_argument("--store", dest="url_override", help="any session store URL instead")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=_demo)

    sessions = commands.add_parser("sessions", help="list or show sessions")
    sessions_cmds = sessions.add_subparsers(dest="sessions_command", required=True)
    s_list = sessions_cmds.add_parser("list", help="sessions, oldest first")
    s_list.add_argument("--status", choices=[s.value for s in SessionStatus])
    s_list.add_argument("--agent", help="only this agent_id")
    s_list.add_argument("--limit", type=int, default=50)
    s_list.add_argument("--offset", type=int, default=0)
    s_list.add_argument("--json", action="store_true")
    s_list.set_defaults(func=_sessions_list)
    s_show = sessions_cmds.add_parser("show", help="one session with its runs")
    s_show.add_argument("session_id")
    s_show.add_argument("--json", action="store_true")
    s_show.set_defaults(func=_sessions_show)

    events = commands.add_parser("events", help="list or follow a session's events")
    events_cmds = events.add_subparsers(dest="events_command", required=True)
    for name, helptext in (
        ("list", "a session's events as a timeline"),
        ("tail", "follow new events live (long-poll) until Ctrl-C"),
    ):
        p = events_cmds.add_parser(name, help=helptext)
        p.add_argument("session_id")
        p.add_argument("--run", help="only this run_id")
        p.add_argument("--type", choices=[t.value for t in EventType], metavar="TYPE")
        p.add_argument("--json", action="store_true")
        if name == "list":
            p.add_argument("--after", type=int, default=None, help="only sequence > AFTER")
            p.add_argument("--limit", type=int, default=None)
            p.set_defaults(func=_events_list)
        else:
            p.add_argument("--after", type=int, default=None, help="start after this sequence")
            p.add_argument("--last", type=int, default=10, help="first show the last N events")
            p.set_defaults(func=_events_tail)

    migrate = commands.add_parser("migrate", help="create or upgrade the schema at URL")
    migrate.add_argument("target_url", metavar="URL", nargs="?", help="defaults to --url")
    migrate.set_defaults(func=_migrate)

    try:
        from .artifacts.cli import register
    except ImportError:  # the artifacts package is optional in a partial install
        pass
    else:
        register(commands)
    from .server.cli import register as register_serve

    register_serve(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "target_url", None):
        args.url = args.target_url
    func: Callable[[argparse.Namespace], Coroutine[Any, Any, int] | int] = args.func
    try:
        result = func(args)
        if asyncio.iscoroutine(result):
            return asyncio.run(result)
        return int(result)
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if err.code in ("validation_error", "migration_required") else 1
    except KeyboardInterrupt:
        return 130
