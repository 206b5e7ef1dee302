"""Building one call of ``lua/write.lua``: its KEYS, its ARGV, and the plan naming them.

The script's header documents every plan field. Event rows come first in ARGV (one
contiguous range; past ``PACK_ABOVE`` rows, one string holding them all, with their lengths
in the plan), then documents and index members in the order they are added.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..models import Session
from .keys import Keys
from .rows import blob_session, members

__all__ = ["PACK_ABOVE", "WritePlan", "WriteResult"]

#: Rows past this many travel as one ARGV string: redis-py packs each argument in Python on
#: the event loop (about 3 us each: 15 ms for a 5,000-event batch), one string costs a copy
#: (issue 13's 20 ms loop-lag bar).
PACK_ABOVE = 256


@dataclass(frozen=True, slots=True)
class WriteResult:
    """``status``: ``OK``, or a refusal (``BUSY``, ``RETRY``, ``OWNERS``, ``CONFLICT``: see
    lua/write.lua); ``out``: (seq, stored) per row, (imported, skipped) for an import, the
    details of a refusal; ``version``: the saved session's version."""

    status: str
    out: list[Any]
    version: str

    @classmethod
    def parse(cls, reply: list[Any]) -> WriteResult:
        if reply[0] in ("OK", "OWNERS"):
            return cls(reply[0], reply[1], reply[2] if len(reply) > 2 else "")
        return cls(reply[0], reply[1:], "")

    def row(self, i: int) -> tuple[int, str]:
        return int(self.out[2 * i]), self.out[2 * i + 1]


class WritePlan:
    """One write script call. ``blobs`` are stored in the session each row names."""

    def __init__(
        self,
        keys: Keys,
        *,
        cluster: bool,
        blobs: Sequence[str] = (),
        claimed: Sequence[int] = (),
        owners: Iterable[str] | None = None,
    ) -> None:
        """``owners``: the sessions the blobs name, when the caller knows them (saves a scan
        of every blob on the event loop)."""
        self._names = keys
        self._cluster = cluster
        self._order: dict[str, int] = {}
        self._sessions: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.argv: list[str | bytes] = []
        self.plan: dict[str, Any] = {"sessions": self._sessions}
        self.plan["publish"] = "SPUBLISH" if cluster else "PUBLISH"
        if cluster:
            self.plan["fenced"] = True
        if len(blobs) > PACK_ABOVE:
            encoded = [b.encode() for b in blobs]
            self.argv.append(b"".join(encoded))
            lens = [len(b) for b in encoded]
            self.plan["rows"] = {"first": 2, "count": len(blobs), "packed": 2, "lens": lens}
        else:
            self.argv.extend(blobs)
        if blobs:
            self.plan.setdefault("rows", {"first": 2, "count": len(blobs)})
            for sid in map(blob_session, blobs) if owners is None else owners:
                self.session(sid)
            if claimed:  # 1-based row numbers
                self.plan["claimed"] = [i + 1 for i in claimed]
            if not cluster:
                self.plan["id_index"] = self._key(keys.event_index)

    def _key(self, key: str) -> int:
        self.keys.append(key)
        return len(self.keys)

    def _arg(self, *values: str) -> int:
        """ARGV position of the first value (ARGV[1] is the plan itself)."""
        at = len(self.argv) + 2
        self.argv.extend(values)
        return at

    def session(self, session_id: str) -> int:
        """The session's number in the plan, adding its keys on first use."""
        i = self._order.get(session_id)
        if i is None:
            i = self._order[session_id] = len(self._sessions) + 1
            first = len(self.keys) + 1
            if self._cluster:  # every key named: the server checks that each one is here
                self.keys.extend(self._names.session(session_id))
                self._sessions.append(
                    {"id": session_id, "keys": first, "channel": self._names.channel(session_id)}
                )
            else:  # its counter key alone: the script names the others from its tag
                self.keys.append(self._names.seq(session_id))
                self._sessions.append({"id": session_id, "keys": first})
        return i

    def expect(self, session_id: str, sequence: int, *, shortcut: bool) -> None:
        """Refuse unless the session's counter is ``sequence`` (contract 3.12); with
        ``shortcut``, a call whose rows are all stored already passes unchecked."""
        s = self.session(session_id)
        self.plan["expected"] = {"session": s, "sequence": sequence, "shortcut": shortcut}

    def _touched_index(self) -> None:
        if not self._cluster and "touched_index" not in self.plan:
            self.plan["touched_index"] = self._key(self._names.touched_index)

    def touch_new(self) -> None:
        """Sessions getting new events get ``updated_at`` = now (C5)."""
        self.plan["touch"] = True
        self._touched_index()

    def touch(self, session_id: str) -> None:
        """The session's ``updated_at`` becomes now (if it has a record)."""
        self.plan.setdefault("touch_sessions", []).append(self.session(session_id))
        self._touched_index()

    def numbered(self, seqs: Sequence[int], latest: int) -> None:
        """Import: the rows keep these numbers; the counter reaches at least ``latest``."""
        self.plan["numbered"] = {"seqs": list(seqs), "latest": latest}

    def save_session(self, session: Session, doc: str) -> None:
        """Store the session record; on a single node its list index entries too."""
        s = self.session(session.id)
        self.plan["session_record"] = {
            "session": s,
            "doc": self._arg(doc),
            "members": self._arg(*members(session)),
        }
        if not self._cluster:
            self.plan["list_index"] = [self._key(k) for k in self._names.list_index]
            self._touched_index()

    def save_run(self, session_id: str, run_id: str, doc: str) -> None:
        entry = {"session": self.session(session_id), "id": run_id, "doc": self._arg(doc)}
        self.plan.setdefault("runs", []).append(entry)

    def remove_run(self, session_id: str, run_id: str) -> None:
        entry = {"session": self.session(session_id), "id": run_id}
        self.plan.setdefault("runs_removed", []).append(entry)

    def _run_index(self) -> None:
        if "run_index" not in self.plan:
            self.plan["run_index"] = self._key(self._names.run_index)

    def set_run_owner(self, run_id: str, session_id: str) -> None:
        """Single node: point the run index at the session, in the same step."""
        self._run_index()
        self.plan.setdefault("run_owners", []).append({"run": run_id, "session": session_id})

    def check_run_owner(self, run_id: str, owner: str) -> None:
        """Single node: refuse the call unless the run index still names ``owner``."""
        self._run_index()
        self.plan.setdefault("run_owner_checks", []).append({"run": run_id, "owner": owner})

    def unless_changed(self, session_id: str, version: str, touched: str) -> None:
        """Refuse the call ('RETRY') if the record was saved or touched since it was read."""
        self.plan["unchanged"] = {
            "session": self.session(session_id),
            "v": version,
            "touched": touched,
        }

    def args(self) -> list[str | bytes]:
        """The plan first (orjson: a tenth of ``json.dumps``' time; its UTF-8 the script's
        cjson reads as the same strings), then the rows and documents."""
        return [orjson.dumps(self.plan), *self.argv]
