"""How events and list-index entries are spelled in Redis.

An event row is the ten ``EncodedEvent`` fields joined by NUL (``codec`` refuses NUL in every
stored text, so the split is exact); the Lua scripts read its first fields (id, session, type,
run, timestamp) with the same layout.
"""

from __future__ import annotations

from ..codec import EncodedEvent, decode_event
from ..models import Event, Session, to_micros

__all__ = ["NS", "blob", "blob_session", "members", "unblob"]

NS = "\0"
_CREATED_OFFSET = 10**18  # makes created_at µs non-negative and fixed-width (20 digits)


def _opt(value: str | None) -> str:
    return "" if value is None else "=" + value


def blob(row: EncodedEvent) -> str:
    """An event row as one NUL-separated string."""
    return NS.join(
        (
            row.id,
            row.session_id,
            row.type,
            _opt(row.run_id),
            str(row.timestamp_us),
            str(row.schema_version),
            _opt(row.provider),
            _opt(row.correlation_id),
            row.data,
            row.metadata,
        )
    )


def unblob(text: str, seq: int) -> Event:
    """The event of a stored row (``blob``'s fields, back in ``EncodedEvent`` order); the
    optional fields inline, as this runs once per row read."""
    i, s, t, r, ts, v, p, c, d, m = text.split(NS, 9)
    return decode_event(
        (
            i,
            s,
            t,
            r[1:] if r else None,
            int(ts),
            d,
            m,
            int(v),
            p[1:] if p else None,
            c[1:] if c else None,
        ),
        seq,
    )


def blob_session(text: str) -> str:
    """The session id field of a row, without decoding the rest."""
    start = text.index(NS) + 1
    return text[start : text.index(NS, start)]


def members(session: Session) -> list[str]:
    """The four list_sessions index members: lex order is (created_at, id) in each filter."""
    tail = f"{to_micros(session.created_at) + _CREATED_OFFSET:020d}{NS}{session.id}"
    status = session.status.value
    return [
        tail,
        f"{status}{NS}{tail}",
        f"{session.agent_id}{NS}{tail}",
        f"{status}{NS}{session.agent_id}{NS}{tail}",
    ]
