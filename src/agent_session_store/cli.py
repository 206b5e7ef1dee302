"""The ``agent-session-store`` command line: look into a store, follow a session live, move
sessions between stores, migrate.

Output is for people (tables and timelines via rich) unless ``--json`` is given, which prints
JSON meant for scripts: one array for lists, one object per line for ``events tail``. Notes
for people (warnings, "more exist", progress) go to stderr, so stdout stays parseable.
Exit codes are listed in ``EXIT_CODES`` and in ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import sys
import tomllib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from . import __version__
from . import events as builders
from .base import SessionStoreBase
from .errors import MigrationRequiredError, SessionNotFoundError, StoreError, redact
from .models import (
    EVENT_FAMILIES,
    Event,
    EventType,
    ExecutionResult,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    iso,
    to_event_type,
    utcnow,
)
from .query import EVENT_ORDERS, SESSION_ORDERS, encode_cursor
from .querying import MAX_LIMIT, event_position, session_position, supports_query
from .retention import RetentionPolicy
from .transfer import ImportReport, copy_session, dump_record, load_record
from .urls import open_session_store

__all__ = ["EXIT_CODES", "main"]

DEFAULT_URL = "sqlite:///agent-sessions.db"
URL_ENV = "AGENT_SESSION_STORE_URL"
#: ``health`` exits with this when it found problems (and lists them).
HEALTH_PROBLEMS = 6

T = TypeVar("T")

#: Exit status -> meaning; also printed at the end of ``--help``.
EXIT_CODES = {
    0: "success",
    1: "the store said no or failed: not found (session_not_found, ...), storage_error, "
    "storage_connection_failed; or a `maintain` step failed (the report lists it)",
    2: "usage error: bad arguments, bad URL, bad input, a bad policy or pricing file "
    "(validation_error, invalid_cursor)",
    3: "the schema needs `agent-session-store migrate` (migration_required)",
    4: "an optional extra is not installed (dependency_not_available)",
    5: "an import or copy conflicts with what the target holds (sequence_conflict)",
    HEALTH_PROBLEMS: "`health` found problems in the stored data (it lists them)",
    130: "interrupted (Ctrl-C)",
}
_EXIT_BY_CODE = {
    "validation_error": 2,
    "invalid_event_type": 2,
    "invalid_status": 2,
    "invalid_cursor": 2,
    "migration_required": 3,
    "dependency_not_available": 4,
    "sequence_conflict": 5,
}

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
    "history": "bold cyan",
}
_STATUS_STYLE = {
    "pending": "dim",
    "active": "bold yellow",
    "running": "bold yellow",
    "paused": "blue",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "magenta",
    "timeout": "red",
}


class UsageError(Exception):
    """A command-line mistake found after parsing (exit 2)."""


# ---------------------------------------------------------------- output helpers


def _color() -> bool:
    return "NO_COLOR" not in os.environ


def _out() -> Console:
    # Piped output (CI logs, less) gets a usable width instead of rich's 80-column fallback.
    kw: dict[str, Any] = {"highlight": False, "soft_wrap": False, "no_color": not _color()}
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return Console(**kw)
    return Console(width=140, height=50, **kw)


def _err() -> Console:
    # Notes are single lines a person or a log reads whole: never hard-wrapped.
    return Console(stderr=True, highlight=False, soft_wrap=True, no_color=not _color())


def _warn(message: str) -> None:
    _err().print(f"[yellow]warning:[/yellow] {message}", markup=True)


def _note(message: str) -> None:
    _err().print(f"[dim]{message}[/dim]")


def _status(value: str) -> Text:
    return Text(value, style=_STATUS_STYLE.get(value, ""))


def _summary(event: Event, width: int = 200) -> str:
    """One line saying what happened, from the payload conventions (docs/events.md), with the
    older keys (tool, arguments, result) still understood."""
    d = event.data
    parts: list[str] = []
    if event.type is EventType.HISTORY_REWOUND and isinstance(d.get("to_sequence"), int):
        return (
            f"rewinds to #{d['to_sequence']}: later events before #{event.sequence_number} hidden"
        )
    role = d.get("role")
    content = d.get("content", d.get("text", d.get("delta")))
    if isinstance(content, list):
        content = " ".join(
            str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in content
        )
    if isinstance(content, str):
        parts.append(f"{role}: {content}" if isinstance(role, str) else content)
    tool = d.get("tool_name", d.get("tool", d.get("name")))
    if isinstance(tool, str):
        args = d.get("tool_input", d.get("arguments", d.get("input")))
        result = d.get("tool_output", d.get("result", d.get("output")))
        text = tool
        if args is not None:
            text += f"({json.dumps(args, ensure_ascii=False)})"
        if result is not None:
            text += f" → {json.dumps(result, ensure_ascii=False)}"
        if isinstance(d.get("error_message"), str):
            text += f" ✗ {d['error_message']}"
        parts.append(text)
    elif isinstance(d.get("error_message"), str):
        parts.append(d["error_message"])
    usage = {k: d[k] for k in ("input_tokens", "output_tokens", "total_tokens") if k in d}
    if usage:
        parts.append(" ".join(f"{k.split('_')[0]}={v}" for k, v in usage.items()))
    if not parts and d:
        parts.append(json.dumps(d, ensure_ascii=False, separators=(",", ":")))
    line = " ".join(parts).replace("\n", " ")
    return line if len(line) <= width else line[: width - 1] + "…"


class _Rewinds:
    """Which events the session's rewinds hide (contract 2.3), from the rewind events alone:
    walking them newest first, a rewind inside a range already hidden has no effect."""

    def __init__(self, rewinds: list[Event]) -> None:
        self.events = rewinds
        self.ranges: list[tuple[int, int]] = []  # hidden: lo < seq < hi
        bound: int | None = None
        for r in sorted(rewinds, key=lambda e: e.sequence_number or 0, reverse=True):
            seq = r.sequence_number or 0
            if bound is not None and seq >= bound:
                continue
            bound = seq
            to = r.data.get("to_sequence")
            if isinstance(to, int) and to + 1 < seq:
                self.ranges.append((to, seq))
                bound = to + 1

    def hidden(self, event: Event) -> bool:
        seq = event.sequence_number or 0
        return any(lo < seq < hi for lo, hi in self.ranges)

    @classmethod
    async def of(cls, store: SessionStoreBase, session_id: str) -> _Rewinds:
        return cls(await store.get_events(session_id, type=EventType.HISTORY_REWOUND))


class _RunLabels:
    """Short labels for run ids in a timeline, with a legend giving every id in full."""

    def __init__(self, prefix: str = "r") -> None:
        self.prefix = prefix
        self.labels: dict[str, str] = {}

    def __call__(self, run_id: str | None) -> str:
        if run_id is None:
            return ""
        label = self.labels.get(run_id)
        if label is None:
            label = self.labels[run_id] = f"{self.prefix}{len(self.labels) + 1}"
        return label

    def legend(self) -> str:
        return "\n".join(f"{label} = {run_id}" for run_id, label in self.labels.items())


def _time(event: Event) -> str:
    return event.timestamp.strftime("%H:%M:%S.%f")[:-3]


def _timeline(title: str, events: list[Event], rewinds: _Rewinds) -> tuple[Table, _RunLabels]:
    labels = _RunLabels()
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    table.add_column("seq", justify="right", style="dim", no_wrap=True)
    table.add_column("time (UTC)", style="dim", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("run", style="dim", no_wrap=True)
    table.add_column("what", overflow="fold")
    for event in events:
        hidden = rewinds.hidden(event)
        style = _FAMILY_STYLE.get(event.type.family, "")
        table.add_row(
            str(event.sequence_number),
            _time(event),
            Text(event.type.value, style=style),
            labels(event.run_id),
            _summary(event),
            style="strike dim" if hidden else None,
        )
    if any(rewinds.hidden(e) for e in events):
        table.caption = "struck-through events were rewound (history_rewound): not visible"
        table.caption_justify = "left"
    return table, labels


def _wide() -> bool:
    return _out().width >= 110


def _sessions_table(title: str, sessions: list[Session]) -> Table:
    """Ids are never shortened (they are what you type next); on a narrow terminal the
    table drops the creation time and tags and folds the agent instead."""
    wide = _wide()
    table = Table(title=title, title_justify="left")
    width = max((len(s.id) for s in sessions), default=2)
    table.add_column("id", no_wrap=True, min_width=width)
    table.add_column("agent", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("updated (UTC)", no_wrap=True)
    if wide:
        table.add_column("created (UTC)", no_wrap=True)
        table.add_column("tags", overflow="fold")
    stamp = "%Y-%m-%d %H:%M:%S" if wide else "%m-%d %H:%M"
    for s in sessions:
        row: list[Text | str] = [
            s.id,
            s.agent_id,
            # soft-deleted sessions show only with --include-deleted, and say so
            _status(s.status.value)
            if s.deleted_at is None
            else Text.assemble(_status(s.status.value), (" (deleted)", "dim red")),
            s.updated_at.strftime(stamp),
        ]
        if wide:
            row += [s.created_at.strftime(stamp), ", ".join(s.tags)]
        table.add_row(*row)
    return table


def _tokens(usage: dict[str, Any]) -> str:
    short = {"input_tokens": "in", "output_tokens": "out", "total_tokens": "total"}
    return " ".join(f"{short.get(k, k)}={v}" for k, v in usage.items())


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def _open(url: str) -> SessionStoreBase:
    return open_session_store(url)


# ---------------------------------------------------------------- sessions


def _has_queries(store: SessionStoreBase) -> bool:
    """Whether the backend implements contract 7 yet (the others get a fallback)."""
    return supports_query(store)


_SESSION_ORDER_TEXT = {
    "updated_at_desc": "newest activity first",
    "created_at_desc": "newest first",
    "created_at_asc": "oldest first",
}


def _keyset_only(args: argparse.Namespace) -> list[str]:
    """The ``sessions list`` options only a keyset search can answer (contract 7.2)."""
    used = [
        f"--{name.replace('_', '-')}"
        for name in (
            "tag",
            "created_after",
            "created_before",
            "updated_after",
            "updated_before",
            "include_deleted",
            "cursor",
        )
        if getattr(args, name)
    ]
    if args.order != "updated_at_desc":
        used.append("--order")
    if args.status and len(args.status) > 1:
        used.append("--status (more than one)")
    return used


async def _sessions_list(args: argparse.Namespace) -> int:
    keyset = _keyset_only(args)
    if args.offset and keyset:
        raise UsageError(f"--offset cannot be combined with {', '.join(keyset)}: page by --cursor")
    order = _SESSION_ORDER_TEXT[args.order]
    async with _open(args.url) as store:
        if keyset or (_has_queries(store) and not args.offset):
            # A keyset page at a time (contract 7.2); backends without it say so (exit 1).
            page = await store.search_sessions(
                status=args.status,
                agent_id=args.agent,
                tags=args.tag,
                created_after=args.created_after,
                created_before=args.created_before,
                updated_after=args.updated_after,
                updated_before=args.updated_before,
                include_deleted=args.include_deleted,
                order_by=args.order,
                limit=_probe(args.limit),
                cursor=args.cursor,
                include_total=args.total,
            )
            found, next_cursor = _page_end(
                page.items,
                args.limit,
                page.cursor,
                lambda s: encode_cursor(
                    "search_sessions", args.order, session_position(s, args.order)
                ),
            )
            more = next_cursor is not None
            hint = f"next: --cursor {next_cursor}" if more else ""
            count = f"{len(found)} of {page.total_count}" if args.total else str(len(found))
            title = f"{count} session(s), {order}"
        else:
            # list_sessions orders by creation, so sort here; this reads every matching
            # session record (not their events).
            status = args.status[0] if args.status else None
            every = await store.list_sessions(status=status, agent_id=args.agent)
            every.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
            found = every[args.offset : args.offset + args.limit]
            end = args.offset + len(found)
            more = end < len(every)
            shown = f"{args.offset + 1}–{end}" if args.offset and found else str(len(found))
            title = f"{shown} of {len(every)} session(s), {order}"
            hint = f"next: --offset {end}" if more else ""
    if args.json:
        _print_json([s.to_dict() for s in found])
        if more:
            _note(f"{title} — {hint}")
    else:
        _print_paged(_sessions_table(title + (" — more exist" if hint else ""), found), hint)
    return 0


def _print_paged(table: Table, hint: str) -> None:
    """A page, then the hint to the next on a line of its own that is never wrapped, so a
    long cursor can be copied whole."""
    console = _out()
    console.print(table)
    if hint:
        console.print(hint, soft_wrap=True, markup=False)


def _probe(limit: int) -> int:
    """Ask for one item more than shown, so "more exist" is known rather than guessed."""
    return min(limit + 1, MAX_LIMIT)


def _page_end(
    items: list[T], limit: int, cursor: str | None, after: Callable[[T], str]
) -> tuple[list[T], str | None]:
    """The items to show and the cursor after the last one shown (None: nothing follows)."""
    if len(items) > limit:
        shown = items[:limit]
        return shown, after(shown[-1])
    # A full page of the largest size may still have a successor: the cursor says where.
    return items, cursor if len(items) == limit == MAX_LIMIT else None


async def _sessions_show(args: argparse.Namespace) -> int:
    async with _open(args.url) as store:
        session = await store.get_session(args.session_id)
        runs = await store.list_runs(args.session_id)
        latest = await store.get_latest_sequence(args.session_id)
    if args.json:
        _print_json(
            {
                "session": session.to_dict(),
                "runs": [r.to_dict() for r in runs],
                "latest_sequence": latest,
            }
        )
        return 0
    console = _out()
    console.print(_sessions_table("session", [session]))
    wide = _wide()
    table = Table(title=f"{len(runs)} run(s), latest sequence {latest}", title_justify="left")
    table.add_column("run", no_wrap=True, min_width=max((len(r.id) for r in runs), default=3))
    table.add_column("status", no_wrap=True)
    if wide:
        table.add_column("started (UTC)", no_wrap=True)
        table.add_column("ended", no_wrap=True)
    for col in ("turns", "tokens", "cost $"):
        table.add_column(col, overflow="fold")
    for r in runs:
        row: list[Text | str] = [r.id, _status(r.status.value)]
        if wide:
            row += [
                r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                "" if r.ended_at is None else r.ended_at.strftime("%H:%M:%S"),
            ]
        row += [
            str(r.turn_count),
            _tokens(r.token_usage),
            "" if r.cost_usd is None else f"{r.cost_usd:.4f}",
        ]
        table.add_row(*row)
    console.print(table)
    return 0


# ---------------------------------------------------------------- events


def _types(values: list[str] | None) -> list[str] | None:
    """``--type`` values (types or families, repeatable) as the set of type strings."""
    if not values:
        return None
    wanted: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if name in EVENT_FAMILIES:
                wanted.extend(t.value for t in EVENT_FAMILIES[name])
                continue
            try:
                wanted.append(to_event_type(name).value)
            except StoreError:
                raise UsageError(
                    f"--type {name!r} is neither an event type nor a family; families: "
                    f"{', '.join(EVENT_FAMILIES)}; custom types look like myapp.note"
                ) from None
    return list(dict.fromkeys(wanted))


async def _resolve_run(store: SessionStoreBase, session_id: str, value: str | None) -> str | None:
    """``--run`` as a full id: an exact id, or the unique prefix of one of the session's runs."""
    if value is None:
        return None
    ids = [r.id for r in await store.list_runs(session_id)]
    if value in ids:
        return value
    matches = [i for i in ids if i.startswith(value)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"--run {value!r} is ambiguous: {', '.join(matches)}")
    _warn(f"session {session_id} has no run record starting with {value!r}; using it as an id")
    return value


async def _warn_if_unknown(store: SessionStoreBase, session_id: str, url: str) -> bool:
    try:
        await store.get_session(session_id)
    except SessionNotFoundError:
        if await store.get_latest_sequence(session_id) == 0:
            _warn(
                f"no session {session_id!r} in {redact(url)}: no session record and no events "
                "(check the id and --url)"
            )
            return True
    return False


async def _query(
    store: SessionStoreBase,
    session_id: str,
    types: list[str] | None,
    limit: int | None,
    **filters: Any,
) -> list[Event]:
    """get_events with several types: one indexed query per type, merged in order."""
    if not types or len(types) == 1:
        one = None if not types else types[0]
        return await store.get_events(session_id, type=one, limit=limit, **filters)
    found: list[Event] = []
    for t in types:
        found.extend(await store.get_events(session_id, type=t, limit=limit, **filters))
    desc = filters.get("order") == "desc"
    found.sort(key=lambda e: e.sequence_number or 0, reverse=desc)
    return found if limit is None else found[:limit]


async def _events_list(args: argparse.Namespace) -> int:
    types = _types(args.type)
    if args.visible and (args.after is not None or args.before is not None):
        raise UsageError("--visible takes --limit (the newest N), not --after or --before")
    async with _open(args.url) as store:
        await _warn_if_unknown(store, args.session_id, args.url)
        run_id = await _resolve_run(store, args.session_id, args.run)
        rewinds = await _Rewinds.of(store, args.session_id)
        fetch = None if args.limit == 0 else args.limit + 1
        if args.visible:
            # The newest N of the visible history; filters apply before the limit.
            filtered = run_id is not None or types is not None
            events = await store.get_visible_events(
                args.session_id, limit=None if filtered else fetch
            )
            events = [e for e in events if (run_id is None or e.run_id == run_id)]
            events = [e for e in events if types is None or e.type.value in types]
            more = fetch is not None and len(events) > args.limit
            if more:
                events = events[-args.limit :]
            if args.order == "desc":
                events.reverse()
        else:
            events = await _query(
                store,
                args.session_id,
                types,
                fetch,
                run_id=run_id,
                after=args.after,
                before=args.before,
                order=args.order,
            )
            more = fetch is not None and len(events) > args.limit
            if more:
                events = events[: args.limit]
    hint = ""
    if more and events and args.visible:
        hint = "older visible events exist: raise --limit"
    elif more and events:
        last = events[-1].sequence_number
        hint = f"next: --{'before' if args.order == 'desc' else 'after'} {last}"
    if args.json:
        _print_json([{**e.to_dict(), "rewound": rewinds.hidden(e)} for e in events])
    else:
        title = f"session {args.session_id}: {len(events)} event(s)"
        if more:
            title += f", more exist — {hint}"
        table, labels = _timeline(title, events, rewinds)
        console = _out()
        console.print(table)
        if labels.labels:
            console.print(Text(labels.legend(), style="dim"))
    if more and args.json:
        _note(f"{len(events)} event(s) shown, more exist — {hint}")
    return 0


async def _events_tail(args: argparse.Namespace) -> int:
    """Follow a session live; long-poll keeps this idle (no busy polling) between events."""
    types = _types(args.type)
    console = _out()
    async with _open(args.url) as store:
        await _warn_if_unknown(store, args.session_id, args.url)
        run_id = await _resolve_run(store, args.session_id, args.run)
        rewinds = await _Rewinds.of(store, args.session_id)
        after = args.after
        if after is None:
            latest = await store.get_latest_sequence(args.session_id)
            after = max(0, latest - args.last)
        _note(
            f"following session {args.session_id} after #{after}; waiting for new events "
            "(Ctrl-C to stop)"
        )
        filters: dict[str, Any] = {}
        if run_id is not None:
            filters["run_id"] = run_id
        if types is not None and len(types) == 1:
            filters["type"] = types[0]
        labels = _RunLabels()
        async for event in store.stream_events(args.session_id, after=after, **filters):
            if event.type is EventType.HISTORY_REWOUND:
                rewinds = _Rewinds([*rewinds.events, event])  # may undo an earlier rewind
            if types is not None and event.type.value not in types:
                continue
            hidden = rewinds.hidden(event)
            if args.json:
                record = {**event.to_dict(), "rewound": hidden}
                print(json.dumps(record, ensure_ascii=False), flush=True)
                continue
            style = _FAMILY_STYLE.get(event.type.family, "")
            run = labels(event.run_id)
            line = Text.assemble(
                (f"{event.sequence_number:>5} ", "dim"),
                (f"{_time(event)}  ", "dim"),
                (event.type.value, style),
                (f" [{run}={event.run_id}]" if run and len(labels.labels) > 0 else "", "dim"),
                "  ",
                _summary(event),
                style="strike dim" if hidden else "",
            )
            console.print(line)
    return 0


# ---------------------------------------------------------------- questions across sessions


def _when(value: str) -> datetime:
    """A time bound: ISO-8601 (no offset means UTC, as every table shows), or a duration
    before now such as ``90m``, ``24h``, ``7d``."""
    ago = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if ago:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[ago.group(2)]
        return utcnow() - timedelta(**{unit: int(ago.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither an ISO-8601 time (2026-01-31, 2026-01-31T09:30:00Z) "
            "nor a time ago (30m, 24h, 7d)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


WHEN_HELP = (
    "WHEN is ISO-8601 (2026-01-31, 2026-01-31T09:30:00Z; UTC unless an offset is given) "
    "or a time ago (30m, 24h, 7d); bounds are inclusive."
)


def _page_size(value: str) -> int:
    number = _positive(value)
    if not 1 <= number <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is not from 1 to {MAX_LIMIT}")
    return number


def _toml(path: str, what: str) -> dict[str, Any]:
    """A TOML file as a table; a missing or malformed file is a usage error naming it."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such {what} file: {path}")
    try:
        with file.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path} is not valid TOML: {err}") from None


def _plain(value: Any) -> Any:
    """A summary dataclass as JSON-ready values (datetimes as ISO-8601 UTC)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    return value


def _usd(value: float | int | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title or None, title_justify="left", show_header=False)
    table.add_column("what", style="dim", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _stamp(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


async def _sessions_stats(args: argparse.Namespace) -> int:
    async with _open(args.url) as store:
        stats = await store.get_session_stats(args.session_id)
    if args.json:
        _print_json(_plain(stats))
        return 0
    statuses = ", ".join(f"{status} {n}" for status, n in stats.status_counts.items())
    _out().print(
        _kv_table(
            f"session {stats.session_id}",
            [
                ("events", str(stats.event_count)),
                ("latest sequence", str(stats.latest_sequence)),
                ("first event (UTC)", _stamp(stats.first_event_at)),
                ("last event (UTC)", _stamp(stats.last_event_at)),
                ("runs", f"{stats.run_count}" + (f" ({statuses})" if statuses else "")),
                ("tokens", _tokens(stats.token_totals)),
                ("cost $", _usd(stats.cost_usd) or "none recorded"),
                ("providers", ", ".join(stats.providers_used)),
            ],
        )
    )
    return 0


def _run_filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "session_id": args.session,
        "agent_id": args.agent,
        "provider": args.provider,
        "since": args.since,
        "until": args.until,
    }


def _scope(args: argparse.Namespace) -> str:
    """What a summary covered, in words, for its title."""
    parts = [
        f"{label} {value}"
        for label, value in (
            ("session", args.session),
            ("agent", args.agent),
            ("provider", args.provider),
        )
        if value is not None
    ]
    if args.since is not None:
        parts.append(f"since {_stamp(args.since)}")
    if args.until is not None:
        parts.append(f"until {_stamp(args.until)}")
    return ", ".join(parts) or "every run"


async def _usage(args: argparse.Namespace) -> int:
    async with _open(args.url) as store:
        usage = await store.get_usage_summary(**_run_filters(args))
    if args.json:
        _print_json(_plain(usage))
        return 0
    table = Table(
        title=f"token usage by provider — {_scope(args)}", title_justify="left", show_footer=True
    )
    columns = {
        "runs": ("run_count", usage.run_count),
        "input": ("input_tokens", usage.total_input_tokens),
        "output": ("output_tokens", usage.total_output_tokens),
        "total": ("total_tokens", usage.total_tokens),
    }
    table.add_column("provider", footer="total", no_wrap=True)
    for name, (_, total) in columns.items():
        table.add_column(name, footer=str(total), justify="right", no_wrap=True)
    for provider, row in usage.by_provider.items():
        table.add_row(provider, *(str(row[key]) for key, _ in columns.values()))
    _out().print(table)
    return 0


async def _cost(args: argparse.Namespace) -> int:
    pricing = None if args.pricing_file is None else _toml(args.pricing_file, "pricing")
    async with _open(args.url) as store:
        cost = await store.get_cost_summary(**_run_filters(args), pricing=pricing)
    if args.json:
        _print_json(_plain(cost))
        return 0
    console = _out()
    by_provider = Table(
        title=f"cost by provider — {_scope(args)}", title_justify="left", show_footer=True
    )
    priced = sum(int(row["run_count"]) for row in cost.by_provider.values())
    by_provider.add_column("provider", footer="total", no_wrap=True)
    by_provider.add_column("priced runs", footer=str(priced), justify="right")
    by_provider.add_column("cost $", footer=_usd(cost.total_cost_usd), justify="right")
    for provider, row in cost.by_provider.items():
        by_provider.add_row(provider, str(row["run_count"]), _usd(row["cost_usd"]))
    console.print(by_provider)
    by_model = Table(title="cost by model", title_justify="left")
    by_model.add_column("model", no_wrap=True)
    for name in ("input", "output", "cost $"):
        by_model.add_column(name, justify="right")
    for model, row in cost.by_model.items():
        by_model.add_row(
            model, str(row["input_tokens"]), str(row["output_tokens"]), _usd(row["cost_usd"])
        )
    console.print(by_model)
    console.print(f"{cost.run_count} run(s) matched, {priced} priced")
    if cost.unmapped_runs:
        _warn(
            f"{cost.unmapped_runs} run(s) have no cost_usd and no price for their provider and "
            "model: not counted (add their prices with --pricing-file)"
        )
    return 0


async def _events_search(args: argparse.Namespace) -> int:
    types = _types(args.type)
    async with _open(args.url) as store:
        filters: dict[str, Any] = {
            "session_ids": args.session,
            "run_ids": args.run,
            "types": types,
            "providers": args.provider,
            "since": args.since,
            "until": args.until,
            "correlation_id": args.correlation_id,
        }
        page = await store.search_events(
            **filters, order_by=args.order, limit=_probe(args.limit), cursor=args.cursor
        )
        total = await store.count_events(**filters) if args.total else None
    found, next_cursor = _page_end(
        page.items,
        args.limit,
        page.cursor,
        lambda e: encode_cursor("search_events", args.order, event_position(e, args.order)),
    )
    count = f"{len(found)} of {total}" if total is not None else str(len(found))
    title = f"{count} event(s), {args.order.replace('_', ' ')}"
    hint = f"next: --cursor {next_cursor}" if next_cursor is not None else ""
    if args.json:
        _print_json([e.to_dict() for e in found])
        if hint or total is not None:
            _note(title + (f" — {hint}" if hint else ""))
        return 0
    # A narrow terminal gets short session labels too, so the "what" column keeps its room;
    # the legends below give every id in full.
    wide = _wide()
    sessions, runs = _RunLabels("s"), _RunLabels()
    table = Table(title=title + (" — more exist" if hint else ""), title_justify="left")
    width = max((len(e.session_id) for e in found), default=7) if wide else 3
    table.add_column("session", no_wrap=True, min_width=width)
    table.add_column("seq", justify="right", style="dim", no_wrap=True)
    table.add_column("time (UTC)", style="dim", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("run", style="dim", no_wrap=True)
    table.add_column("what", overflow="fold", min_width=20)
    for e in found:
        table.add_row(
            e.session_id if wide else sessions(e.session_id),
            str(e.sequence_number),
            _stamp(e.timestamp) if wide else _time(e),
            Text(e.type.value, style=_FAMILY_STYLE.get(e.type.family, "")),
            runs(e.run_id),
            _summary(e),
        )
    _print_paged(table, hint)
    legend = "\n".join(x.legend() for x in (sessions, runs) if x.labels)
    if legend:
        _out().print(Text(legend, style="dim"), soft_wrap=True)
    return 0


# ---------------------------------------------------------------- maintain, health


async def _maintain(args: argparse.Namespace) -> int:
    policy = RetentionPolicy.from_dict(_toml(args.policy_file, "policy"))
    now = args.now if args.now is not None else utcnow()
    async with _open(args.url) as store:
        report = await store.run_maintenance(policy, dry_run=args.dry_run, now=now)
    if args.json:
        _print_json({**_plain(report), "now": iso(now), "policy": _plain(policy)})
    else:
        verb = "would be" if report.dry_run else "were"
        title = f"maintenance as of {_stamp(now)} UTC" + (
            " — dry run: nothing was changed" if report.dry_run else ""
        )
        console = _out()
        console.print(title, soft_wrap=True, markup=False)
        console.print(
            _kv_table(
                "",
                [
                    (f"sessions soft-deleted ({verb})", str(report.sessions_soft_deleted)),
                    (f"sessions hard-deleted ({verb})", str(report.sessions_hard_deleted)),
                    (f"events pruned ({verb})", str(report.events_pruned)),
                    (f"artifacts deleted ({verb})", str(report.artifacts_deleted)),
                    ("took", f"{report.duration_ms:.1f} ms"),
                ],
            )
        )
    for message in report.errors:
        _err().print(f"[bold red]failed:[/bold red] {message}", markup=True)
    return 1 if report.errors else 0


async def _health(args: argparse.Namespace) -> int:
    async with _open(args.url) as store:
        problems = await store.health_check()
    if args.json:
        _print_json({"healthy": not problems, "problems": problems})
    elif problems:
        console = _out()
        console.print(f"[bold red]{len(problems)} problem(s)[/bold red] in {redact(args.url)}:")
        for problem in problems:
            console.print(f"  - {problem}", markup=False, soft_wrap=True)
    else:
        _out().print(f"[green]healthy[/green]: no problems found in {redact(args.url)}")
    return HEALTH_PROBLEMS if problems else 0


# ---------------------------------------------------------------- export, import, copy, fork


async def _export(args: argparse.Namespace) -> int:
    out: IO[str]
    count = 0
    async with _open(args.url) as store:
        records = store.iter_export(args.session_id)
        if args.output in (None, "-"):
            out = sys.stdout
            count = await _write_records(records, out)
            out.flush()
        else:
            path = Path(args.output)
            tmp = path.with_name(path.name + ".part")
            with tmp.open("w", encoding="utf-8") as out:
                count = await _write_records(records, out)
            tmp.replace(path)  # a reader never sees half an export
    where = "stdout" if args.output in (None, "-") else args.output
    _note(f"exported session {args.session_id}: {count} event(s) to {where}")
    return 0


async def _write_records(records: AsyncIterator[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    async for record in records:
        out.write(dump_record(record) + "\n")
        count += record["record"] == "event"
    return count


def _read_lines(path: str) -> Iterator[dict[str, Any]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    try:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield load_record(line)
            except StoreError as err:
                err.message = f"{path}:{number}: {err.message}"
                err.args = (err.message,)
                raise
    finally:
        if stream is not sys.stdin:
            stream.close()


async def _import(args: argparse.Namespace) -> int:
    if args.file != "-" and not Path(args.file).is_file():  # noqa: ASYNC240  (a CLI process)
        raise UsageError(f"no such file: {args.file}")
    async with _open(args.url) as store:
        report = await store.import_records(_read_lines(args.file), chunk_size=args.chunk_size)
    if args.json:
        _print_json(_report_dict(report))
    else:
        _out().print(
            f"imported session [bold]{report.session_id}[/bold]: {report.events_imported} "
            f"event(s) written, {report.events_skipped} already there, "
            f"{report.runs_imported} run(s)"
        )
    return 0


def _report_dict(report: ImportReport) -> dict[str, Any]:
    return {
        "session_id": report.session_id,
        "events_imported": report.events_imported,
        "events_skipped": report.events_skipped,
        "runs_imported": report.runs_imported,
    }


class _Counting:
    """A source store whose export reports each event it yields (for the progress bar)."""

    def __init__(self, store: SessionStoreBase, seen: Callable[[int], None]) -> None:
        self._store = store
        self._seen = seen
        self.get_events = store.get_events

    async def iter_export(
        self, session_id: str, *, after: int = 0, page_size: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        async for record in self._store.iter_export(session_id, after=after, page_size=page_size):
            if record["record"] == "event":
                self._seen(record["event"]["sequence_number"])
            yield record


async def _copy(args: argparse.Namespace) -> int:
    if bool(args.sessions) == bool(args.all):
        raise UsageError("name the sessions to copy, or give --all (not both)")
    reports: list[ImportReport] = []
    err = _err()
    async with _open(args.source) as source, _open(args.target) as target:
        ids = [s.id for s in await source.list_sessions()] if args.all else list(args.sessions)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
            disable=not err.is_terminal,
        ) as progress:
            for sid in ids:
                latest = await source.get_latest_sequence(sid)
                task = progress.add_task(sid, total=latest or None)

                def seen(seq: int, task: Any = task) -> None:
                    progress.update(task, completed=seq)

                counting = cast(SessionStoreBase, _Counting(source, seen))
                report = await copy_session(counting, target, sid, page_size=args.page_size)
                progress.update(task, completed=latest)
                reports.append(report)
    if args.json:
        _print_json([_report_dict(r) for r in reports])
    else:
        console = _out()
        for r in reports:
            console.print(
                f"{r.session_id}: {r.events_imported} event(s) copied, "
                f"{r.events_skipped} already there"
            )
        total = sum(r.events_imported for r in reports)
        console.print(f"copied {len(reports)} session(s), {total} event(s) written")
    return 0


async def _fork(args: argparse.Namespace) -> int:
    async with _open(args.url) as store:
        forked = await store.fork_session(
            args.session_id,
            at_sequence=args.at,
            new_session_id=args.new_id,
            agent_id=args.agent,
        )
        latest = await store.get_latest_sequence(forked.id)
    if args.json:
        _print_json({"session": forked.to_dict(), "latest_sequence": latest})
    else:
        at = forked.metadata.get("forked_at_sequence")
        _out().print(
            f"forked {args.session_id} at #{at} into [bold]{forked.id}[/bold] "
            f"({latest} event(s) of visible history)"
        )
    return 0


# ---------------------------------------------------------------- migrate


def _schema_version(store: SessionStoreBase) -> int | None:
    """The schema version this code migrates to: the backend module's (or its package's)
    ``SCHEMA_VERSION``; None for backends without a schema."""
    name = type(store).__module__
    while name:
        version = getattr(sys.modules.get(name), "SCHEMA_VERSION", None)
        if isinstance(version, int):
            return version
        name = name.rpartition(".")[0]
    return None


async def _migrate(args: argparse.Namespace) -> int:
    url = args.url
    store = _open(url)
    where = redact(url)
    target = _schema_version(store)
    if target is None:
        print(f"{where}: this backend has no schema; nothing to migrate")
        await store.close()
        return 0
    path = getattr(store, "path", None)
    if isinstance(path, str) and not Path(path).exists():  # noqa: ASYNC240
        found: int | None = 0
        state = "no database file yet"
    else:
        try:
            await store.open()
            found, state = target, "up to date"
        except MigrationRequiredError as err:
            raw = err.details.get("found", err.details.get("version"))
            found = raw if isinstance(raw, int) else None
            state = "needs migration"
        finally:
            await store.close()
    before = "no schema" if not found else f"version {found}"
    if found == target:
        print(f"{where}: schema already at version {target}; nothing to do")
        return 0
    if args.dry_run:
        print(f"{where}: {state} ({before}); migrate would bring it to version {target}")
        return 0
    fresh = _open(url)
    try:
        await fresh.migrate()
    finally:
        await fresh.close()
    print(f"{where}: migrated from {before} to version {target}")
    return 0


# ---------------------------------------------------------------- demo


async def simulate_agent_session(store: SessionStoreBase) -> str:
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
    sid, rid = session.id, run.id
    prompt = run.input["prompt"] if run.input else ""
    await store.append_events(
        [
            builders.event(EventType.SESSION_STARTED, sid, run_id=rid),
            builders.event(EventType.RUN_STARTED, sid, {"model": "claude"}, run_id=rid),
            builders.message(sid, prompt, role="user", run_id=rid),
        ]
    )
    for chunk in ("Let me look at ", "the parser and ", "run the failing test."):
        await store.append_event(builders.message_streamed(sid, chunk, run_id=rid))
    tool_calls = [
        ("read_file", {"path": "widgets/parse.py"}, {"lines": 88}),
        ("run_tests", {"select": "test_parse"}, {"failed": 1, "passed": 11}),
        ("apply_patch", {"file": "widgets/parse.py", "hunks": 1}, {"ok": True}),
        ("run_tests", {"select": "test_parse"}, {"failed": 0, "passed": 12}),
    ]
    for i, (name, tool_input, tool_output) in enumerate(tool_calls, 1):
        call = f"call_{i}"
        await store.append_event(
            builders.tool_call_started(sid, name, tool_input, tool_call_id=call, run_id=rid)
        )
        await store.append_event(
            builders.tool_call_completed(sid, name, tool_output, tool_call_id=call, run_id=rid)
        )
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
                builders.message(sid, answer, role="assistant", run_id=rid),
                builders.token_usage(sid, input_tokens=5120, output_tokens=412, run_id=rid),
                builders.turn_completed(sid, 3, run_id=rid),
                builders.run_completed(sid, {"answer": answer}, run_id=rid),
                builders.event(EventType.SESSION_COMPLETED, sid, run_id=rid),
            ],
            provider_metadata={"model": "claude"},
        )
    )
    return session.id


def _cli_command() -> str:
    """How to run this CLI again from any directory: the absolute path of this script."""
    script = Path(sys.executable).parent / "agent-session-store"
    if script.exists():
        return str(script.absolute())
    return f"{Path(sys.executable).absolute()} -m agent_session_store"


async def _demo(args: argparse.Namespace) -> int:
    url = args.url_override
    db = Path(args.db).absolute()  # noqa: ASYNC240
    if url is None:
        db.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{db}?auto_migrate=true"
    console = _out()
    async with _open(url) as store:
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
    console.print(_sessions_table("session", [session]))
    for r in runs:
        console.print(
            Text.assemble(
                f"run {r.id}: ",
                _status(r.status.value),
                f", {r.turn_count} turns, tokens {r.token_usage}, cost ${r.cost_usd}",
            )
        )
    table, labels = _timeline(f"timeline of {session_id}", events, _Rewinds([]))
    console.print(table)
    console.print(Text(labels.legend(), style="dim"))
    look = url if args.url_override is not None else f"sqlite:///{db}"
    command = _cli_command()
    console.print(
        Text(
            "Look again (works from any directory):\n"
            f"  {command} --url '{redact(look)}' events list {session_id}\n"
            f"or activate the venv first: source {Path(command.split()[0]).parent}/activate",
            style="dim",
        ),
        soft_wrap=True,  # a command to copy must not be broken across lines
    )
    return 0


# ---------------------------------------------------------------- parser


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default and keeps the epilog's line breaks."""


def _epilog() -> str:
    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    return (
        f"The store URL comes from --url, else ${URL_ENV}, else {DEFAULT_URL}.\n"
        "Set NO_COLOR=1 for plain output. docs/cli.md has examples.\n\nexit codes:\n" + codes
    )


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-session-store",
        description="Inspect, follow, move and migrate agent sessions stored by "
        "agent-session-store.",
        epilog=_epilog(),
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"session store URL (${URL_ENV} when set)",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(group: Any, name: str, helptext: str, func: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(
            name, help=helptext, description=helptext, formatter_class=_Formatter
        )
        p.set_defaults(func=func)
        return p

    def json_flag(p: argparse.ArgumentParser, what: str = "JSON for scripts") -> None:
        p.add_argument("--json", action="store_true", help=what)

    demo = command(commands, "demo", "write a simulated agent session and show it", _demo)
    demo.add_argument("--db", default="demo-data/demo.db", help="SQLite file to write")
    demo.add_argument(
        "--store", dest="url_override", metavar="URL", help="write to this store URL instead"
    )
    json_flag(demo)

    sessions = commands.add_parser(
        "sessions", help="list, show or sum up sessions", formatter_class=_Formatter
    )
    s_cmds = sessions.add_subparsers(dest="sessions_command", required=True, metavar="COMMAND")
    s_list = command(
        s_cmds, "list", "sessions by filter, newest activity first by default", _sessions_list
    )
    s_list.add_argument(
        "--status",
        action="append",
        choices=[s.value for s in SessionStatus],
        help="only these statuses (repeatable: any of them)",
    )
    s_list.add_argument("--agent", help="only this agent_id")
    s_list.add_argument(
        "--tag", action="append", metavar="TAG", help="only sessions with every one of these tags"
    )
    for bound, text in (
        ("created-after", "created at or after WHEN"),
        ("created-before", "created at or before WHEN"),
        ("updated-after", "active at or after WHEN"),
        ("updated-before", "last active at or before WHEN"),
    ):
        s_list.add_argument(f"--{bound}", type=_when, metavar="WHEN", help=f"only sessions {text}")
    s_list.add_argument(
        "--order",
        choices=SESSION_ORDERS,
        default="updated_at_desc",
        help="updated_at_desc: newest activity first",
    )
    s_list.add_argument(
        "--include-deleted",
        action="store_true",
        help="also sessions soft-deleted by `maintain` (not yet hard-deleted)",
    )
    s_list.add_argument("--limit", type=_page_size, default=50, help="show at most N")
    s_list.add_argument(
        "--offset",
        type=_positive,
        default=0,
        help="skip the first N (for stores that cannot page by cursor)",
    )
    s_list.add_argument("--cursor", help="the next page, as the previous page's hint says")
    s_list.add_argument(
        "--total",
        action=argparse.BooleanOptionalAction,
        default=True,
        help='count every match too ("N of M"); --no-total skips the count',
    )
    json_flag(s_list, "one JSON array (a note on stderr says when more exist)")
    s_list.epilog = WHEN_HELP
    s_show = command(s_cmds, "show", "one session with its runs", _sessions_show)
    s_show.add_argument("session_id", metavar="SESSION", help="the session id")
    json_flag(s_show)
    s_stats = command(
        s_cmds, "stats", "one session's counts, tokens, cost and time span", _sessions_stats
    )
    s_stats.add_argument("session_id", metavar="SESSION", help="the session id")
    json_flag(s_stats)

    events = commands.add_parser(
        "events",
        help="list or follow a session's events, or search across sessions",
        formatter_class=_Formatter,
    )
    e_cmds = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    for name, helptext, func in (
        ("list", "a session's events as a timeline (rewound events struck through)", _events_list),
        ("tail", "follow new events live (long-poll) until Ctrl-C", _events_tail),
    ):
        p = command(e_cmds, name, helptext, func)
        p.add_argument("session_id", metavar="SESSION", help="the session id")
        p.add_argument("--run", help="only this run: its id or a unique prefix of it")
        p.add_argument(
            "--type",
            action="append",
            metavar="TYPE",
            help="only these types or families (repeatable, or comma-separated): "
            "e.g. --type tool --type message_sent; families: " + ", ".join(EVENT_FAMILIES),
        )
        if name == "list":
            p.add_argument("--after", type=_positive, help="only sequence > AFTER")
            p.add_argument("--before", type=_positive, help="only sequence < BEFORE")
            p.add_argument(
                "--limit", type=_positive, default=200, help="show at most N (0: no limit)"
            )
            p.add_argument(
                "--order", choices=["asc", "desc"], default="asc", help="oldest or newest first"
            )
            p.add_argument(
                "--visible",
                action="store_true",
                help="only the visible history (rewound events left out); --limit keeps the newest",
            )
            json_flag(p, 'one JSON array; each event has "rewound": true|false')
        else:
            p.add_argument("--after", type=_positive, help="start after this sequence")
            p.add_argument("--last", type=_positive, default=10, help="first show the last N")
            json_flag(p, 'one JSON object per line, with "rewound"')

    e_search = command(
        e_cmds, "search", "events across sessions, by filter, a page at a time", _events_search
    )
    e_search.add_argument(
        "--session", action="append", metavar="SESSION", help="only these sessions (repeatable)"
    )
    e_search.add_argument(
        "--run", action="append", metavar="RUN", help="only these run ids (repeatable)"
    )
    e_search.add_argument(
        "--type",
        action="append",
        metavar="TYPE",
        help="only these types or families (repeatable, or comma-separated)",
    )
    e_search.add_argument(
        "--provider", action="append", metavar="PROVIDER", help="only these providers (repeatable)"
    )
    e_search.add_argument("--since", type=_when, metavar="WHEN", help="only events at or after")
    e_search.add_argument("--until", type=_when, metavar="WHEN", help="only events at or before")
    e_search.add_argument("--correlation-id", help="only events with this correlation_id")
    e_search.add_argument(
        "--order",
        choices=EVENT_ORDERS,
        default="timestamp_asc",
        help="sequence_asc: by sequence number, then id",
    )
    e_search.add_argument("--limit", type=_page_size, default=100, help="show at most N")
    e_search.add_argument("--cursor", help="the next page, as the previous page's hint says")
    e_search.add_argument("--total", action="store_true", help='count every match too ("N of M")')
    json_flag(e_search, "one JSON array (a note on stderr gives the next cursor)")
    e_search.epilog = WHEN_HELP

    for name, helptext, func in (
        ("usage", "token totals of the matching runs, per provider", _usage),
        ("cost", "what the matching runs cost, per provider and per model", _cost),
    ):
        p = command(commands, name, helptext, func)
        p.add_argument("--session", help="only this session's runs")
        p.add_argument("--agent", help="only runs of this agent_id's sessions")
        p.add_argument("--provider", help="only this provider's runs")
        p.add_argument("--since", type=_when, metavar="WHEN", help="only runs started at or after")
        p.add_argument("--until", type=_when, metavar="WHEN", help="only runs started at or before")
        if name == "cost":
            p.add_argument(
                "--pricing-file",
                metavar="FILE",
                help="TOML prices in USD per million tokens, over the built-in table: "
                '[provider."model"] input = 3.0, output = 15.0',
            )
        json_flag(p)
        p.epilog = WHEN_HELP

    maintain = command(
        commands,
        "maintain",
        "apply a retention policy: soft delete, hard delete, prune; print the report",
        _maintain,
    )
    maintain.add_argument(
        "--policy-file",
        required=True,
        metavar="FILE",
        help="TOML retention settings (RetentionPolicy fields; an empty file: the defaults)",
    )
    maintain.add_argument(
        "--dry-run", action="store_true", help="only count what would be done; change nothing"
    )
    maintain.add_argument(
        "--now",
        type=_when,
        metavar="WHEN",
        help="judge ages as of this time instead of the current time",
    )
    json_flag(maintain)
    maintain.epilog = WHEN_HELP

    health = command(
        commands,
        "health",
        f"look for inconsistencies in the stored data; exit {HEALTH_PROBLEMS} when found",
        _health,
    )
    json_flag(health)

    export = command(
        commands, "export", "write a session as JSON Lines (one record a line)", _export
    )
    export.add_argument("session_id", metavar="SESSION", help="the session id")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    imp = command(commands, "import", "import a JSON Lines export (idempotent)", _import)
    imp.add_argument("file", metavar="FILE", help="an export file, or - for stdin")
    imp.add_argument(
        "--chunk-size", type=_positive, default=1000, help="events per atomic import step"
    )
    json_flag(imp)

    copy = command(
        commands,
        "copy",
        "copy sessions between stores, streaming; a re-run copies only what is missing",
        _copy,
    )
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="source store")
    copy.add_argument("--to", dest="target", required=True, metavar="URL", help="target store")
    copy.add_argument("sessions", nargs="*", metavar="SESSION", help="the sessions to copy")
    copy.add_argument("--all", action="store_true", help="every session of the source")
    copy.add_argument(
        "--page-size", type=_positive, default=1000, help="events read and written per step"
    )
    json_flag(copy)

    fork = command(commands, "fork", "a new session from a session's visible history", _fork)
    fork.add_argument("session_id", metavar="SESSION", help="the session to fork")
    fork.add_argument("--at", type=_positive, help="cut at this sequence (default: the latest)")
    fork.add_argument(
        "--new-id", help="the new session's id (default: derived, so a retry is a no-op)"
    )
    fork.add_argument("--agent", help="the new session's agent_id (default: the source's)")
    json_flag(fork)

    migrate = command(
        commands,
        "migrate",
        "create or upgrade the schema at URL, saying from and to what",
        _migrate,
    )
    migrate.add_argument("target_url", metavar="URL", nargs="?", help="defaults to --url")
    migrate.add_argument(
        "--dry-run", action="store_true", help="only say what migrate would do (the status)"
    )

    try:
        from .artifacts.cli import register
    except ImportError:  # the artifacts package is optional in a partial install
        pass
    else:
        register(commands)
    from .server.cli import register as register_serve

    register_serve(commands)
    _defaults_everywhere(parser)
    return parser


def _defaults_everywhere(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's help shows defaults, including groups registered elsewhere."""
    parser.formatter_class = _Formatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _defaults_everywhere(sub)


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
    except UsageError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return _EXIT_BY_CODE.get(err.code, 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `| head` closed the pipe: not an error of ours
        return 0
