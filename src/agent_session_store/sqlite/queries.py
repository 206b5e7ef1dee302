"""The query statements (contract 7) and the retention work (contract 8); module-level so
tests can EXPLAIN them.

Every search walks one index in page order, chosen here (``INDEXED BY``) rather than left to a
planner without statistics: the narrowest single filter's index when one is given, else the
ordering's own. A filter with several values (statuses, session ids ...) walks that index once
per value, each walk cut at the page size, and the walks are merged (``UNION ALL ... ORDER BY``
over sorted arms): a page costs what it returns plus what other filters skip, never a sort of
every match. Keyset positions are row-value comparisons on (sort value, id).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ..codec import decode_page, decode_run
from ..models import Event, Run, Session
from ..query import EventSearch, Position, RunFilter, RunGroup, RunSearch, SessionSearch, descending
from .reads import _session
from .schema import EVENT_COLUMNS, last_seq

#: Above this many values, a multi-valued filter is checked per row instead of merged.
MAX_ARMS = 16
IN_CHUNK = 500


@dataclass(slots=True)
class _Select:
    """One walk: FROM (with its index), the driving condition, then shared conditions."""

    source: str
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)


def _marks(values: tuple[Any, ...]) -> str:
    return ", ".join("?" * len(values))


def _keyset(sort: str, key: str, desc: bool, after: Position | None) -> tuple[list[str], list[Any]]:
    if after is None:
        return [], []
    return [f"({sort}, {key}) {'<' if desc else '>'} (?, ?)"], [after[0], after[1]]


def _compose(
    arms: list[_Select],
    columns: str,
    shared: list[str],
    shared_params: list[Any],
    order: str,
    limit: int,
) -> tuple[str, list[Any]]:
    """One statement from the walks: a single walk as is, several merged in order."""
    if len(arms) == 1:
        arm = arms[0]
        where = " AND ".join([*arm.where, *shared]) or "1"
        sql = f"SELECT {columns} FROM {arm.source} WHERE {where} ORDER BY {order} LIMIT ?"
        return sql, [*arm.params, *shared_params, limit]
    parts: list[str] = []
    params: list[Any] = []
    for arm in arms:  # each walk streams in index order; the merge stops at the limit
        where = " AND ".join([*arm.where, *shared]) or "1"
        parts.append(f"SELECT {columns} FROM {arm.source} WHERE {where}")
        params += [*arm.params, *shared_params]
    return " UNION ALL ".join(parts) + f" ORDER BY {order} LIMIT ?", [*params, limit]


def _arms(source: str, column: str, values: tuple[Any, ...]) -> list[_Select]:
    return [_Select(source, [f"{column} = ?"], [v]) for v in values]


def _bounds(column: str, low: int | None, high: int | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if low is not None:
        where.append(f"{column} >= ?")
        params.append(low)
    if high is not None:
        where.append(f"{column} <= ?")
        params.append(high)
    return where, params


# ---------------------------------------------------------------- sessions


def _session_filters(q: SessionSearch, tagged: bool, drive: str) -> tuple[list[str], list[Any]]:
    """Every condition but the driving one, on ``s`` (sessions)."""
    where: list[str] = []
    params: list[Any] = []
    if not q.include_deleted:
        where.append("s.deleted_at_us IS NULL")
    if q.agent_id is not None and drive != "agent":
        where.append("s.agent_id = ?")
        params.append(q.agent_id)
    if q.statuses is not None and drive != "status":
        where.append(f"s.status IN ({_marks(q.statuses)})")
        params += q.statuses
    for tag in q.tags[1:] if tagged else q.tags:
        where.append(
            "EXISTS (SELECT 1 FROM session_tags AS x WHERE x.session_id = s.id AND x.tag = ?)"
        )
        params.append(tag)
    for column, low, high in (
        ("s.created_at_us", q.created_after_us, q.created_before_us),
        ("s.updated_at_us", q.updated_after_us, q.updated_before_us),
    ):
        w, p = _bounds(column, low, high)
        where += w
        params += p
    return where, params


def _session_drive(q: SessionSearch) -> tuple[str, list[_Select], str, str]:
    """(which filter drives, the walks, sort column, id column)."""
    by = "updated" if q.order_by.startswith("updated") else "created"
    if q.tags:
        source = (
            f"session_tags AS t INDEXED BY session_tags_by_{by}"
            " CROSS JOIN sessions AS s ON s.id = t.session_id"
        )
        return "tag", [_Select(source, ["t.tag = ?"], [q.tags[0]])], f"t.{by}_at_us", "t.session_id"
    suffix = "_updated" if by == "updated" else ""
    if q.agent_id is not None:
        source = f"sessions AS s INDEXED BY sessions_by_agent{suffix}"
        return "agent", [_Select(source, ["s.agent_id = ?"], [q.agent_id])], f"s.{by}_at_us", "s.id"
    if q.statuses is not None and len(q.statuses) <= MAX_ARMS:
        source = f"sessions AS s INDEXED BY sessions_by_status{suffix}"
        return "status", _arms(source, "s.status", q.statuses), f"s.{by}_at_us", "s.id"
    source = f"sessions AS s INDEXED BY sessions_by_{by}"
    return "none", [_Select(source)], f"s.{by}_at_us", "s.id"


def search_sessions_sql(
    q: SessionSearch, after: Position | None, limit: int
) -> tuple[str, list[Any]]:
    drive, arms, sort, key = _session_drive(q)
    desc = descending(q.order_by)
    where, params = _session_filters(q, drive == "tag", drive)
    if drive == "tag" and not q.include_deleted:
        where.insert(0, "t.deleted_at_us IS NULL")
    w, p = _keyset(sort, key, desc, after)
    direction = " DESC" if desc else ""
    columns = f"s.doc, s.updated_at_us, {sort} AS k, {key} AS i"
    return _compose(arms, columns, w + where, p + params, f"k{direction}, i{direction}", limit)


def count_sessions_sql(q: SessionSearch) -> tuple[str, list[Any]]:
    if q.tags:
        source = "session_tags AS t CROSS JOIN sessions AS s ON s.id = t.session_id"
        where, params = _session_filters(q, True, "none")
        where.insert(0, "t.tag = ?")
        params.insert(0, q.tags[0])
    else:
        source = "sessions AS s"
        where, params = _session_filters(q, False, "none")
    return f"SELECT count(*) FROM {source} WHERE {' AND '.join(where) or '1'}", params


def search_sessions(
    conn: sqlite3.Connection, q: SessionSearch, after: Position | None, limit: int
) -> list[Session]:
    sql, params = search_sessions_sql(q, after, limit)
    return [_session(r[0], r[1]) for r in conn.execute(sql, params)]


def count_sessions(conn: sqlite3.Connection, q: SessionSearch) -> int:
    sql, params = count_sessions_sql(q)
    return int(conn.execute(sql, params).fetchone()[0])


# ---------------------------------------------------------------- runs


def search_runs_sql(q: RunSearch, after: Position | None, limit: int) -> tuple[str, list[Any]]:
    by_tokens = q.order_by == "token_usage_desc"
    sort = "r.total_tokens" if by_tokens else "r.started_at_us"
    drive = "none"
    arms: list[_Select]
    if by_tokens and q.session_id is not None:
        # one session's runs, sorted: bounded by the session, whatever the store holds
        arms, drive = [_Select("runs AS r", ["r.session_id = ?"], [q.session_id])], "session"
    elif by_tokens:
        arms = [_Select("runs AS r INDEXED BY runs_by_tokens")]
    elif q.session_id is not None:
        source = "runs AS r INDEXED BY runs_by_session"
        arms, drive = [_Select(source, ["r.session_id = ?"], [q.session_id])], "session"
    elif q.agent_id is not None:
        source = "runs AS r INDEXED BY runs_by_agent"
        arms, drive = [_Select(source, ["r.agent_id = ?"], [q.agent_id])], "agent"
    elif q.provider is not None:
        source = "runs AS r INDEXED BY runs_by_provider"
        arms, drive = [_Select(source, ["r.provider = ?"], [q.provider])], "provider"
    elif q.statuses is not None and len(q.statuses) <= MAX_ARMS:
        arms = _arms("runs AS r INDEXED BY runs_by_status", "r.status", q.statuses)
        drive = "status"
    else:
        arms = [_Select("runs AS r INDEXED BY runs_by_started")]
    where: list[str] = []
    params: list[Any] = []
    for name, column, value in (
        ("session", "r.session_id", q.session_id),
        ("agent", "r.agent_id", q.agent_id),
        ("provider", "r.provider", q.provider),
    ):
        if value is not None and drive != name:
            where.append(f"{column} = ?")
            params.append(value)
    if q.statuses is not None and drive != "status":
        where.append(f"r.status IN ({_marks(q.statuses)})")
        params += q.statuses
    w, p = _bounds("r.started_at_us", q.started_after_us, q.started_before_us)
    where += w
    params += p
    if q.min_tokens is not None:
        where.append("r.total_tokens >= ?")
        params.append(q.min_tokens)
    desc = descending(q.order_by)
    w, p = _keyset(sort, "r.id", desc, after)
    d = " DESC" if desc else ""
    columns = f"r.doc, {sort} AS k, r.id AS i"
    return _compose(arms, columns, w + where, p + params, f"k{d}, i{d}", limit)


def search_runs(
    conn: sqlite3.Connection, q: RunSearch, after: Position | None, limit: int
) -> list[Run]:
    sql, params = search_runs_sql(q, after, limit)
    return [decode_run(r[0]) for r in conn.execute(sql, params)]


def run_groups_sql(f: RunFilter) -> tuple[str, list[Any]]:
    """Runs added up per (provider, model, status), walking the narrowest filter's index."""
    where: list[str] = []
    params: list[Any] = []
    index = "runs_by_started"
    for name, column, value in (
        ("runs_by_provider", "provider", f.provider),
        ("runs_by_agent", "agent_id", f.agent_id),
        ("runs_by_session", "session_id", f.session_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
            index = name  # the last one set wins: session, then agent, then provider
    w, p = _bounds("started_at_us", f.since_us, f.until_us)
    where += w
    params += p
    # Costed and uncosted runs are separate groups: five plain sums instead of conditional ones.
    sql = (
        "SELECT provider, model, status, cost_usd IS NULL, count(*), sum(input_tokens),"
        " sum(output_tokens), sum(total_tokens), total(cost_usd)"
        f" FROM runs INDEXED BY {index} WHERE {' AND '.join(where) or '1'}"
        " GROUP BY provider, model, status, cost_usd IS NULL"
    )
    if index == "runs_by_started" and not w:  # every run: the covering index, in group order
        sql = sql.replace("INDEXED BY runs_by_started", "INDEXED BY runs_by_group")
    return sql, params


def run_groups(conn: sqlite3.Connection, f: RunFilter) -> list[RunGroup]:
    sql, params = run_groups_sql(f)
    acc: dict[tuple[str | None, str | None, str], list[Any]] = {}
    for provider, model, status, uncosted, n, inp, out, tot, cost in conn.execute(sql, params):
        row = acc.setdefault((provider, model, status), [0, 0, 0, 0, 0, 0.0, 0, 0])
        row[0] += n
        row[1] += inp
        row[2] += out
        row[3] += tot
        if uncosted:
            row[6] += inp
            row[7] += out
        else:
            row[4] += n
            row[5] += cost
    groups = [RunGroup(p, m, s, *row) for (p, m, s), row in acc.items()]
    groups.sort(key=lambda g: (g.provider or "", g.model or "", g.status))
    return groups


# ---------------------------------------------------------------- events

EVENT_STATS = (
    "SELECT (SELECT count(*) FROM events INDEXED BY events_by_session_time WHERE session_id = ?),"
    " (SELECT min(timestamp_us) FROM events WHERE session_id = ?),"
    " (SELECT max(timestamp_us) FROM events WHERE session_id = ?)"
)


def event_stats(conn: sqlite3.Connection, session_id: str) -> tuple[int, int | None, int | None]:
    row = conn.execute(EVENT_STATS, (session_id,) * 3).fetchone()
    return int(row[0]), row[1], row[2]


def session_stats_parts(
    conn: sqlite3.Connection, session_id: str
) -> tuple[list[RunGroup], tuple[int, int | None, int | None], int] | None:
    """What get_session_stats needs, in one visit to a reader thread; None: no record."""
    if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
        return None
    return (
        run_groups(conn, RunFilter(session_id)),
        event_stats(conn, session_id),
        last_seq(conn, session_id),
    )


def _event_filters(q: EventSearch, drive: str) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for name, column, values in (
        ("session", "session_id", q.session_ids),
        ("run", "run_id", q.run_ids),
        ("type", "type", q.types),
        ("provider", "provider", q.providers),
    ):
        if values is not None and drive != name:
            where.append(f"{column} IN ({_marks(values)})")
            params += values
    if q.correlation_id is not None and drive != "correlation":
        where.append("correlation_id = ?")
        params.append(q.correlation_id)
    w, p = _bounds("timestamp_us", q.since_us, q.until_us)
    return where + w, params + p


def _event_drive(q: EventSearch) -> tuple[str, list[_Select]]:
    by_seq = q.order_by == "sequence_asc"
    if by_seq and q.session_ids is not None and len(q.session_ids) <= MAX_ARMS:
        return "session", _arms("events", "session_id", q.session_ids)  # the primary key
    # sequence_asc across sessions has no index of its own (no default ordering, and every
    # append would pay for it): the filter's index finds the matches, which are then sorted.
    if q.correlation_id is not None:
        source = "events INDEXED BY events_by_correlation_time"
        return "correlation", [_Select(source, ["correlation_id = ?"], [q.correlation_id])]
    for name, column, values, index in (
        ("run", "run_id", q.run_ids, "events_by_run_time"),
        ("session", "session_id", q.session_ids, "events_by_session_time"),
        ("provider", "provider", q.providers, "events_by_provider_time"),
        ("type", "type", q.types, "events_by_type_time"),
    ):
        if values is not None and len(values) <= MAX_ARMS:
            return name, _arms(f"events INDEXED BY {index}", column, values)
    if by_seq and q.since_us is None and q.until_us is None:
        return "none", [_Select("events")]  # everything, sorted: no index walk helps
    return "none", [_Select("events INDEXED BY events_by_time")]


def search_events_sql(q: EventSearch, after: Position | None, limit: int) -> tuple[str, list[Any]]:
    drive, arms = _event_drive(q)
    where, params = _event_filters(q, drive)
    sort = "seq" if q.order_by == "sequence_asc" else "timestamp_us"
    desc = descending(q.order_by)
    w, p = _keyset(sort, "id", desc, after)
    d = " DESC" if desc else ""
    return _compose(arms, EVENT_COLUMNS, w + where, p + params, f"{sort}{d}, id{d}", limit)


def count_events_sql(q: EventSearch) -> tuple[str, list[Any]]:
    where, params = _event_filters(q, "none")
    return f"SELECT count(*) FROM events WHERE {' AND '.join(where) or '1'}", params


def search_events(
    conn: sqlite3.Connection, q: EventSearch, after: Position | None, limit: int
) -> list[Event]:
    sql, params = search_events_sql(q, after, limit)
    return decode_page(conn.execute(sql, params))


def count_events(conn: sqlite3.Connection, q: EventSearch) -> int:
    sql, params = count_events_sql(q)
    return int(conn.execute(sql, params).fetchone()[0])


# ---------------------------------------------------------------- retention


def _expired_sql(
    cutoff_us: int, exempt_statuses: tuple[str, ...], exempt_tags: tuple[str, ...]
) -> tuple[str, list[Any]]:
    """The WHERE of sessions a soft delete marks: an index range on updated_at."""
    where = ["updated_at_us < ?", "deleted_at_us IS NULL"]
    params: list[Any] = [cutoff_us]
    if exempt_statuses:
        where.append(f"status NOT IN ({_marks(exempt_statuses)})")
        params += exempt_statuses
    if exempt_tags:
        where.append(
            "NOT EXISTS (SELECT 1 FROM session_tags AS x WHERE x.session_id = sessions.id"
            f" AND x.tag IN ({_marks(exempt_tags)}))"
        )
        params += exempt_tags
    return " AND ".join(where), params


def count_expired(
    conn: sqlite3.Connection,
    cutoff_us: int,
    exempt_statuses: tuple[str, ...],
    exempt_tags: tuple[str, ...],
) -> int:
    sql, params = count_expired_sql(cutoff_us, exempt_statuses, exempt_tags)
    return int(conn.execute(sql, params).fetchone()[0])


def count_expired_sql(
    cutoff_us: int, exempt_statuses: tuple[str, ...], exempt_tags: tuple[str, ...]
) -> tuple[str, list[Any]]:
    where, params = _expired_sql(cutoff_us, exempt_statuses, exempt_tags)
    return f"SELECT count(*) FROM sessions INDEXED BY sessions_by_updated WHERE {where}", params


def soft_delete(
    conn: sqlite3.Connection,
    cutoff_us: int,
    exempt_statuses: tuple[str, ...],
    exempt_tags: tuple[str, ...],
    now_us: int,
    now_iso: str,
) -> int:
    """One UPDATE in the writer's transaction: the condition is checked as each is marked.
    The doc gets ``deleted_at`` too; ``updated_at`` is left alone (C5)."""
    where, params = _expired_sql(cutoff_us, exempt_statuses, exempt_tags)
    sql = (
        "UPDATE sessions INDEXED BY sessions_by_updated SET deleted_at_us = ?,"
        f" doc = json_set(doc, '$.deleted_at', ?) WHERE {where}"
    )
    return conn.execute(sql, [now_us, now_iso, *params]).rowcount


DELETED_BEFORE = (
    "SELECT id FROM sessions INDEXED BY sessions_by_deleted"
    " WHERE deleted_at_us IS NOT NULL AND deleted_at_us < ? ORDER BY id"
)


def deleted_before(conn: sqlite3.Connection, cutoff_us: int) -> list[str]:
    return [r[0] for r in conn.execute(DELETED_BEFORE, (cutoff_us,))]


#: The counter bounds the count from above, so only sessions numbered past the limit are
#: counted, and each count stops at limit + 1 events.
SESSIONS_OVER = (
    "SELECT s.id FROM seqs AS q JOIN sessions AS s ON s.id = q.session_id"
    " WHERE q.last_seq > ? AND EXISTS (SELECT 1 FROM events AS e WHERE e.session_id = s.id"
    " ORDER BY e.seq LIMIT 1 OFFSET ?) ORDER BY s.id"
)


def sessions_over(conn: sqlite3.Connection, max_events: int) -> list[str]:
    return [r[0] for r in conn.execute(SESSIONS_OVER, (max_events, max_events))]


def prune_victims(
    conn: sqlite3.Connection,
    session_id: str,
    max_events: int,
    first_types: tuple[str, ...],
    protected: frozenset[str],
) -> list[int]:
    """The sequence numbers to remove, oldest first within each pass."""
    total = int(
        conn.execute("SELECT count(*) FROM events WHERE session_id = ?", (session_id,)).fetchone()[
            0
        ]
    )
    excess = total - max_events
    if excess <= 0:
        return []
    first = tuple(t for t in first_types if t not in protected)
    victims: list[int] = []
    if first:
        sql = (
            "SELECT seq FROM events WHERE session_id = ?"
            f" AND type IN ({_marks(first)}) ORDER BY seq LIMIT ?"
        )
        victims += [r[0] for r in conn.execute(sql, [session_id, *first, excess])]
    if len(victims) < excess:
        skip = tuple(sorted(protected | set(first)))
        sql = (
            "SELECT seq FROM events WHERE session_id = ?"
            f" AND type NOT IN ({_marks(skip)}) ORDER BY seq LIMIT ?"
        )
        victims += [r[0] for r in conn.execute(sql, [session_id, *skip, excess - len(victims)])]
    return victims


def prune(
    conn: sqlite3.Connection,
    session_id: str,
    max_events: int,
    first_types: tuple[str, ...],
    protected: frozenset[str],
) -> int:
    """Delete the victims' rows (their ids go with them); the counter in ``seqs`` stays."""
    victims = prune_victims(conn, session_id, max_events, first_types, protected)
    for i in range(0, len(victims), IN_CHUNK):
        chunk = victims[i : i + IN_CHUNK]
        conn.execute(
            f"DELETE FROM events WHERE session_id = ? AND seq IN ({_marks(tuple(chunk))})",
            [session_id, *chunk],
        )
    return len(victims)


HEALTH_ORPHAN_RUNS = (
    "SELECT r.id, r.session_id FROM runs AS r"
    " WHERE NOT EXISTS (SELECT 1 FROM sessions AS s WHERE s.id = r.session_id) ORDER BY r.id"
)
HEALTH_COUNTERS = (
    "SELECT session_id, last_seq, top FROM (SELECT q.session_id, q.last_seq,"
    " (SELECT max(seq) FROM events AS e WHERE e.session_id = q.session_id) AS top"
    " FROM seqs AS q) WHERE top > last_seq ORDER BY session_id"
)
#: The tag table and the runs' agent_id copy, against what they mirror.
HEALTH_TAGS = (
    "SELECT s.id FROM sessions AS s WHERE (SELECT count(DISTINCT value) FROM json_each(s.tags))"
    " <> (SELECT count(*) FROM session_tags AS t WHERE t.session_id = s.id"
    " AND t.updated_at_us IS s.updated_at_us AND t.deleted_at_us IS s.deleted_at_us"
    " AND t.created_at_us = s.created_at_us"
    " AND t.tag IN (SELECT value FROM json_each(s.tags))) ORDER BY s.id"
)
HEALTH_RUN_AGENTS = (
    "SELECT r.id FROM runs AS r JOIN sessions AS s ON s.id = r.session_id"
    " WHERE r.agent_id IS NOT s.agent_id ORDER BY r.id"
)


def health(conn: sqlite3.Connection) -> list[str]:
    problems = [
        f"run {rid!r} belongs to session {sid!r}, which has no record"
        for rid, sid in conn.execute(HEALTH_ORPHAN_RUNS)
    ]
    problems += [
        f"session {sid!r}: counter {last} is below event {top}"
        for sid, last, top in conn.execute(HEALTH_COUNTERS)
    ]
    problems += [
        f"session {sid!r}: its session_tags rows are out of step with its tags"
        for (sid,) in conn.execute(HEALTH_TAGS)
    ]
    problems += [
        f"run {rid!r}: its agent_id copy differs from its session's"
        for (rid,) in conn.execute(HEALTH_RUN_AGENTS)
    ]
    return problems
