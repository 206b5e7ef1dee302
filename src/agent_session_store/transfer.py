"""Moving sessions between stores: the export format, import checks, fork ids (contract 10).

Written once for every backend. An export is a stream of records, one JSON object each:
a header naming the format and the session's latest sequence, the session, each run, then
each event in sequence order. That stream is the CLI's JSON Lines file, what ``copy``
pipes from one store into another, and what ``import_records`` consumes a page at a time,
so memory stays bounded by one page whatever the session's size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .models import Event, Run, Session

if TYPE_CHECKING:
    from .ports import SessionStore

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ImportReport",
    "SessionExport",
    "copy_session",
    "derived_id",
    "dump_record",
    "fork_session_id",
    "load_record",
    "read_export",
]

EXPORT_FORMAT = "agent-session-store/session-export"
EXPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SessionExport:
    """One session with everything it owns, events in sequence order (gaps kept)."""

    session: Session
    runs: list[Run] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    latest_sequence: int = 0

    def records(self) -> Iterable[dict[str, Any]]:
        """The same records ``iter_export`` yields, for writing a file."""
        yield header_record(self.session.id, self.latest_sequence)
        yield {"record": "session", "session": self.session.to_dict()}
        for run in self.runs:
            yield {"record": "run", "run": run.to_dict()}
        for event in self.events:
            yield {"record": "event", "event": event.to_dict()}


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import wrote; a re-import of the same export imports 0 and skips all."""

    session_id: str
    events_imported: int = 0
    events_skipped: int = 0
    runs_imported: int = 0


def header_record(session_id: str, latest_sequence: int) -> dict[str, Any]:
    return {
        "record": "header",
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "session_id": session_id,
        "latest_sequence": latest_sequence,
    }


def dump_record(record: Mapping[str, Any]) -> str:
    """One line of the JSON Lines form (no newline)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def load_record(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ValidationError(f"export line is not JSON: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("record"), str):
        raise ValidationError('export line is not a record (a JSON object with a "record" key)')
    return record


# ---------------------------------------------------------------- reading a record stream


@dataclass(slots=True)
class ExportHead:
    """The part of an export that comes before its events."""

    session: Session
    runs: list[Run]
    latest_sequence: int


async def _aiter(records: AsyncIterable[Mapping[str, Any]] | Iterable[Mapping[str, Any]]) -> Any:
    if isinstance(records, AsyncIterable):
        async for record in records:
            yield record
    else:
        for record in records:
            yield record


async def read_export(
    records: AsyncIterable[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
) -> tuple[ExportHead, AsyncIterator[Event]]:
    """Split a record stream into its head and an iterator of checked events.

    Checks what an import relies on, so a damaged file is refused with the line it broke at
    rather than half imported: the header's format and version, the session record before
    anything else, runs of that session, events of that session in strictly increasing
    sequence order up to the header's ``latest_sequence``.
    """
    stream = _aiter(records)
    first = await _next(stream)
    if first is None or first.get("record") != "header":
        raise ValidationError("an export starts with its header record")
    if first.get("format") != EXPORT_FORMAT:
        raise ValidationError(f"not a session export (format {first.get('format')!r})")
    if first.get("version") != EXPORT_VERSION:
        raise ValidationError(
            f"export version {first.get('version')!r} is not supported "
            f"(this library reads version {EXPORT_VERSION})"
        )
    latest = first.get("latest_sequence")
    if type(latest) is not int or latest < 0:
        raise ValidationError("export header: latest_sequence must be an int >= 0")
    second = await _next(stream)
    if second is None or second.get("record") != "session":
        raise ValidationError("an export's second record is its session")
    session = Session.from_dict(_body(second, "session"))
    if session.id != first.get("session_id"):
        raise ValidationError("export header and session record name different sessions")
    runs: list[Run] = []
    pending: Mapping[str, Any] | None = None
    while True:
        record = await _next(stream)
        if record is None or record.get("record") != "run":
            pending = record
            break
        runs.append(_run_of(session.id, Run.from_dict(_body(record, "run"))))
    head = ExportHead(session, runs, latest)

    async def events() -> AsyncIterator[Event]:
        record = pending
        last = 0
        while record is not None:
            if record.get("record") != "event":
                raise ValidationError(
                    f"unexpected {record.get('record')!r} record after the events began"
                )
            event = Event.from_dict(_body(record, "event"))
            last = check_exported_event(session.id, event, last, latest)
            yield event
            record = await _next(stream)

    return head, events()


async def _next(stream: Any) -> Mapping[str, Any] | None:
    try:
        record: Mapping[str, Any] = await stream.__anext__()
    except StopAsyncIteration:
        return None
    if not isinstance(record, Mapping):
        raise ValidationError(f"an export record must be a dict, got {type(record).__name__}")
    return record


def _body(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    body = record.get(key)
    if not isinstance(body, Mapping):
        raise ValidationError(f"a {key!r} record needs a {key!r} object")
    return body


def _run_of(session_id: str, run: Run) -> Run:
    if run.session_id != session_id:
        raise ValidationError(
            f"run {run.id!r} belongs to session {run.session_id!r}, not the exported {session_id!r}"
        )
    return run


def check_exported_event(session_id: str, event: Event, last: int, latest: int) -> int:
    """An exported event keeps its number; numbers only grow and never pass the counter."""
    seq = event.sequence_number
    if event.session_id != session_id:
        raise ValidationError(
            f"event {event.id!r} belongs to session {event.session_id!r}, not the exported "
            f"{session_id!r}"
        )
    if seq is None or seq <= last:
        raise ValidationError(
            f"event {event.id!r}: exported events need sequence numbers in increasing order "
            f"(got {seq!r} after {last})"
        )
    if seq > latest:
        raise ValidationError(
            f"event {event.id!r}: sequence {seq} is beyond the export's latest_sequence {latest}"
        )
    return seq


def check_export(export: object) -> SessionExport:
    if not isinstance(export, SessionExport):
        raise ValidationError(f"expected a SessionExport, got {type(export).__name__}")
    if type(export.latest_sequence) is not int or export.latest_sequence < 0:
        raise ValidationError("SessionExport.latest_sequence must be an int >= 0")
    for run in export.runs:
        _run_of(export.session.id, run)
    last = 0
    for event in export.events:
        last = check_exported_event(export.session.id, event, last, export.latest_sequence)
    return export


# ---------------------------------------------------------------- fork ids


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]


def fork_session_id(source_id: str, at_sequence: int) -> str:
    """The default id of a fork: the same request always names the same new session."""
    return "ses_" + _digest("fork", source_id, str(at_sequence))


def derived_id(prefix: str, new_session_id: str, original_id: str) -> str:
    """A copied event's or run's id: deterministic, so a retried fork writes nothing new."""
    return prefix + _digest(new_session_id, original_id)


# ---------------------------------------------------------------- copy


async def copy_session(
    source: SessionStore, target: SessionStore, session_id: str, *, page_size: int = 1000
) -> ImportReport:
    """Stream one session from ``source`` into ``target``; a re-run copies only what is missing.

    Memory stays bounded by one page. When the target already holds a prefix of the session
    (a copy that died), the export starts after the target's last event, provided both stores
    hold the same event at that number; the import still checks every event it writes.
    """
    after = 0
    theirs = await target.get_events(session_id, order="desc", limit=1)
    if theirs and theirs[0].sequence_number is not None:
        seq = theirs[0].sequence_number
        ours = await source.get_events(session_id, after=seq - 1, limit=1)
        if ours and ours[0].id == theirs[0].id:
            after = seq
    records = source.iter_export(session_id, after=after, page_size=page_size)
    return await target.import_records(records, chunk_size=page_size)
