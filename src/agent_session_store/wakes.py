"""What a commit appended to a session, so a long-poll wakes only readers it can satisfy.

A backend that knows what it just appended hands ``SessionStoreBase._notify`` one ``Wake`` per
session: the numbers, types, runs and newest timestamp of the new events. A waiting reader
whose filters none of them can pass stays asleep instead of re-querying, so 1,000 readers
waiting for a tool call cost nothing when a message is appended. A wake is a superset test
only (each field is checked on its own): it may wake a reader that then finds nothing, never
the reverse. A backend that cannot tell (a notification lost, a commit seen only through a
counter) passes no wake, and every reader of the session re-queries as before.

The wire form (``dumps``/``loads``) travels in PostgreSQL NOTIFY payloads and Redis pub/sub
messages; the Lua and SQL writers build the same JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import EventQuery

__all__ = ["Wake", "wakes_of_rows"]

#: Above this many distinct runs in one commit the runs are left out (any run may match):
#: keeps a wake small enough for a NOTIFY payload (8,000 bytes).
MAX_RUNS = 32


@dataclass(frozen=True, slots=True)
class Wake:
    """The new events of one session in one commit; ``None`` in a field means unknown."""

    first: int | None = None  # lowest new sequence number
    last: int | None = None  # highest new sequence number
    types: frozenset[str] | None = None
    #: run ids of the new events; ``None`` as a member stands for events without a run
    runs: frozenset[str | None] | None = None
    newest_us: int | None = None  # the latest timestamp among them

    def may_satisfy(self, q: EventQuery) -> bool:
        """False only when no event of this commit can pass ``q``'s filters."""
        if q.type is not None and self.types is not None and q.type not in self.types:
            return False
        if q.run_id is not None and self.runs is not None and q.run_id not in self.runs:
            return False
        if q.after is not None and self.last is not None and self.last <= q.after:
            return False
        if q.before is not None and self.first is not None and self.first >= q.before:
            return False
        return not (
            q.since_us is not None and self.newest_us is not None and self.newest_us < q.since_us
        )

    def dumps(self) -> str:
        """The wire form: short keys, unknown fields left out."""
        doc: dict[str, object] = {}
        if self.first is not None and self.last is not None:
            doc["f"], doc["l"] = self.first, self.last
        if self.types is not None:
            doc["t"] = sorted(self.types)
        if self.runs is not None:
            doc["r"] = sorted(r for r in self.runs if r is not None)
            doc["n"] = None in self.runs
        if self.newest_us is not None:
            doc["ts"] = self.newest_us
        return json.dumps(doc, separators=(",", ":"))


def loads(text: str | bytes) -> Wake | None:
    """A wake from its wire form; ``None`` (wake everyone) for anything malformed."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            return None
        first, last, ts = (_int(doc.get(k)) for k in ("f", "l", "ts"))
        types, runs = (_names(doc.get(k)) for k in ("t", "r"))
        if (first is None) != (last is None):
            return None
        run_set: frozenset[str | None] | None = None
        if runs is not None:
            run_set = frozenset([*runs, None] if doc.get("n") else runs)
        return Wake(first, last, None if types is None else frozenset(types), run_set, ts)
    except (ValueError, TypeError):
        return None


def session_of(text: str) -> str | None:
    """The session a PostgreSQL wake payload names (its ``s``: the id, or '#' + md5)."""
    try:
        sid = json.loads(text).get("s")
    except (ValueError, AttributeError):
        return None
    return sid if isinstance(sid, str) else None


def _int(value: object) -> int | None:
    """An int, also spelled as a decimal string (Lua's JSON would round a big number)."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, str):
        return int(value)
    raise ValueError(value)


def _names(value: object) -> list[str] | None:
    if value is None:
        return None
    if value == {}:  # Lua's JSON spells an empty list as {}
        return []
    if isinstance(value, list) and all(isinstance(n, str) for n in value):
        return value
    raise ValueError(value)


def wakes_of_rows(rows: Iterable[tuple[str, str, str | None, int, int]]) -> dict[str, Wake]:
    """One wake per session from (session_id, type, run_id, timestamp_us, seq) of new rows."""
    acc: dict[str, tuple[int, int, set[str], set[str | None], int]] = {}
    for sid, type_, run, ts, seq in rows:
        got = acc.get(sid)
        if got is None:
            acc[sid] = (seq, seq, {type_}, {run}, ts)
            continue
        lo, hi, types, runs, newest = got
        types.add(type_)
        runs.add(run)
        if seq < lo or seq > hi or ts > newest:
            acc[sid] = (min(lo, seq), max(hi, seq), types, runs, max(newest, ts))
    return {
        sid: Wake(
            lo, hi, frozenset(types), frozenset(runs) if len(runs) <= MAX_RUNS else None, newest
        )
        for sid, (lo, hi, types, runs, newest) in acc.items()
    }


def merge(a: Wake | None, b: Wake | None) -> Wake | None:
    """Two commits' wakes as one (a union); unknown stays unknown."""
    if a is None or b is None:
        return None
    first = last = None
    if a.first is not None and a.last is not None and b.first is not None and b.last is not None:
        first, last = min(a.first, b.first), max(a.last, b.last)
    types = None if a.types is None or b.types is None else a.types | b.types
    runs = None if a.runs is None or b.runs is None else a.runs | b.runs
    if runs is not None and len(runs) > MAX_RUNS:
        runs = None
    newest = None if a.newest_us is None or b.newest_us is None else max(a.newest_us, b.newest_us)
    return Wake(first, last, types, runs, newest)
