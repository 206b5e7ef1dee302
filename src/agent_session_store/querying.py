"""The query and maintenance operations every session store offers (contract 7 and 8).

``SessionStoreBase`` inherits this mixin: its public methods check every argument the same
way for every backend, decode cursors, then call a few primitives the backend implements
(an indexed search, a count, per-group run aggregates, event aggregates, and the deletes
retention needs). Everything else — pages, cursors, pricing, summaries, the order of
maintenance steps, dry runs — is here, once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import QueryNotImplementedError, StoreError, ValidationError
from .models import (
    Event,
    Run,
    Session,
    check_aware,
    check_id,
    to_event_type,
    to_micros,
    to_run_status,
    to_session_status,
    utcnow,
)
from .query import (
    EVENT_ORDERS,
    RUN_ORDERS,
    SESSION_ORDERS,
    CostSummary,
    EventSearch,
    Page,
    Position,
    RunFilter,
    RunGroup,
    RunSearch,
    SessionSearch,
    SessionStats,
    UsageSummary,
    cost_summary,
    decode_cursor,
    encode_cursor,
    merge_pricing,
    run_facts,
    session_stats,
    usage_summary,
)
from .retention import PROTECTED_TYPES, MaintenanceReport, RetentionPolicy

__all__ = ["ArtifactCleanup", "QueryAndMaintenance", "supports_query"]

T = TypeVar("T")

#: Called by a composite store with the hard-deleted session ids (and ``dry_run``);
#: returns how many artifacts it deleted, or would delete.
ArtifactCleanup = Callable[[list[str], bool], Awaitable[int]]

MAX_LIMIT = 1000


def _limit(value: object, default: int) -> int:
    if value is None:
        return default
    if type(value) is not int or not 1 <= value <= MAX_LIMIT:
        raise ValidationError(
            f"limit must be an int from 1 to {MAX_LIMIT}, got {value!r}", details={"field": "limit"}
        )
    return value


def _us(value: object, name: str) -> int | None:
    return None if value is None else to_micros(check_aware(value, name))


def _opt_id(value: object, name: str) -> str | None:
    return None if value is None else check_id(value, name)


def _many(value: object, name: str, convert: Callable[[Any], str]) -> tuple[str, ...] | None:
    """One value or a list of them; an empty list means no filter (C8)."""
    if value is None:
        return None
    if isinstance(value, str):
        return (convert(value),)
    if not isinstance(value, list | tuple):
        raise ValidationError(
            f"{name} must be one value or a list, got {type(value).__name__}",
            details={"field": name},
        )
    found = tuple(dict.fromkeys(convert(v) for v in value))
    return found or None


def _choice(value: object, allowed: tuple[str, ...], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(
            f"{name} must be one of {', '.join(allowed)}, got {value!r}", details={"field": name}
        )
    return value


def _bool(value: object, name: str) -> bool:
    if type(value) is not bool:
        raise ValidationError(f"{name} must be a bool", details={"field": name})
    return value


def _policy(value: object) -> RetentionPolicy:
    if not isinstance(value, RetentionPolicy):
        raise ValidationError(f"expected a RetentionPolicy, got {type(value).__name__}")
    return value


def _now(value: object) -> datetime:
    return utcnow() if value is None else check_aware(value, "now")


def _cutoff_us(now: datetime, days: int) -> int:
    return to_micros(now - timedelta(days=days))


def session_position(session: Session, order_by: str) -> Position:
    value = session.updated_at if order_by.startswith("updated") else session.created_at
    return to_micros(value), session.id


def run_position(run: Run, order_by: str) -> Position:
    if order_by == "token_usage_desc":
        return run_facts(run).total_tokens, run.id
    return to_micros(run.started_at), run.id


def event_position(event: Event, order_by: str) -> Position:
    if order_by == "sequence_asc":
        return event.sequence_number or 0, event.id
    return to_micros(event.timestamp), event.id


#: The primitives a backend implements for contract 7 (the queries).
QUERY_PRIMITIVES = (
    "_search_sessions",
    "_count_sessions",
    "_search_runs",
    "_run_groups",
    "_event_stats",
    "_search_events",
    "_count_events",
)


def supports_query(store: object) -> bool:
    """Whether ``store`` answers contract 7: it has the ``SessionQuery`` methods and does not
    say otherwise through ``implements_query`` (the shared base's answer, below). Callers
    with a fallback (the server, the CLI) ask this instead of probing and reading errors."""
    from .ports import SessionQuery  # ports imports what this module builds on

    return isinstance(store, SessionQuery) and getattr(store, "implements_query", True) is True


class QueryAndMaintenance:
    """Contract 7 and 8 on top of a backend's primitives."""

    @property
    def implements_query(self) -> bool:
        """True when this backend implements the query primitives; a backend still on the
        stubs below answers every query with ``QueryNotImplementedError``."""
        cls = type(self)
        return all(
            getattr(cls, name) is not getattr(QueryAndMaintenance, name)
            for name in QUERY_PRIMITIVES
        )

    if TYPE_CHECKING:

        async def _ready(self) -> None: ...

        def _wrap(self, exc: BaseException, operation: str) -> StoreError: ...

        async def get_session(self, session_id: str) -> Session: ...

        async def _delete_session(self, session_id: str) -> None: ...

        async def _latest_sequence(self, session_id: str) -> int: ...

    async def _call(self, operation: str, work: Coroutine[Any, Any, T]) -> T:
        try:
            await self._ready()
        except BaseException:
            work.close()  # never started: no "coroutine was never awaited" warning
            raise
        try:
            return await work
        except StoreError:
            raise
        except Exception as exc:
            raise self._wrap(exc, operation) from exc

    # ------------------------------------------------------------ 7.2 sessions

    async def search_sessions(
        self,
        *,
        agent_id: str | None = None,
        status: str | list[str] | None = None,
        tags: list[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        include_deleted: bool = False,
        order_by: str = "updated_at_desc",
        limit: int = 50,
        cursor: str | None = None,
        include_total: bool = False,
    ) -> Page[Session]:
        """Sessions by filter, a keyset page at a time; ``updated_at_desc`` lists the most
        recently active first (contract 7.2)."""
        if tags is not None and (isinstance(tags, str) or not isinstance(tags, list | tuple)):
            raise ValidationError("tags must be a list of str", details={"field": "tags"})
        q = SessionSearch(
            agent_id=_opt_id(agent_id, "agent_id"),
            statuses=_many(status, "status", lambda s: to_session_status(s).value),
            tags=tuple(dict.fromkeys(check_id(t, "tags[]") for t in tags or ())),
            created_after_us=_us(created_after, "created_after"),
            created_before_us=_us(created_before, "created_before"),
            updated_after_us=_us(updated_after, "updated_after"),
            updated_before_us=_us(updated_before, "updated_before"),
            include_deleted=_bool(include_deleted, "include_deleted"),
            order_by=_choice(order_by, SESSION_ORDERS, "order_by"),
        )
        lim = _limit(limit, 50)
        total = _bool(include_total, "include_total")
        after = decode_cursor(cursor, "search_sessions", q.order_by)
        items = await self._call("search_sessions", self._search_sessions(q, after, lim))
        count = await self._call("search_sessions", self._count_sessions(q)) if total else None
        next_cursor = (
            encode_cursor("search_sessions", q.order_by, session_position(items[-1], q.order_by))
            if items
            else None
        )
        return Page(items, next_cursor, count)

    # ------------------------------------------------------------ 7.3 stats

    async def get_session_stats(self, session_id: str) -> SessionStats:
        """Counts, tokens, cost and time span of one session; ``session_not_found`` if
        unknown (contract 7.3)."""
        check_id(session_id, "session_id")
        parts = await self._call("get_session_stats", self._session_stats_parts(session_id))
        if parts is None:
            await self.get_session(session_id)  # session_not_found, as get_session says it
            parts = await self._call(
                "get_session_stats", QueryAndMaintenance._session_stats_parts(self, session_id)
            )
            assert parts is not None
        groups, events, latest = parts
        return session_stats(session_id, groups, events, latest)

    # ------------------------------------------------------------ 7.4 runs

    async def search_runs(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        status: str | list[str] | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        min_tokens: int | None = None,
        order_by: str = "started_at_desc",
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Run]:
        """Runs across sessions, a keyset page at a time (contract 7.4)."""
        if min_tokens is not None and (type(min_tokens) is not int or min_tokens < 0):
            raise ValidationError("min_tokens must be an int >= 0", details={"field": "min_tokens"})
        q = RunSearch(
            session_id=_opt_id(session_id, "session_id"),
            agent_id=_opt_id(agent_id, "agent_id"),
            provider=_opt_id(provider, "provider"),
            statuses=_many(status, "status", lambda s: to_run_status(s).value),
            started_after_us=_us(started_after, "started_after"),
            started_before_us=_us(started_before, "started_before"),
            min_tokens=min_tokens,
            order_by=_choice(order_by, RUN_ORDERS, "order_by"),
        )
        lim = _limit(limit, 50)
        after = decode_cursor(cursor, "search_runs", q.order_by)
        items = await self._call("search_runs", self._search_runs(q, after, lim))
        next_cursor = (
            encode_cursor("search_runs", q.order_by, run_position(items[-1], q.order_by))
            if items
            else None
        )
        return Page(items, next_cursor)

    # ------------------------------------------------------------ 7.5 / 7.6 usage and cost

    def _run_filter(
        self,
        session_id: object,
        agent_id: object,
        provider: object,
        since: object,
        until: object,
    ) -> RunFilter:
        return RunFilter(
            session_id=_opt_id(session_id, "session_id"),
            agent_id=_opt_id(agent_id, "agent_id"),
            provider=_opt_id(provider, "provider"),
            since_us=_us(since, "since"),
            until_us=_us(until, "until"),
        )

    async def get_usage_summary(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> UsageSummary:
        """Token totals of the runs started within [since, until] (contract 7.5)."""
        f = self._run_filter(session_id, agent_id, provider, since, until)
        return usage_summary(await self._call("get_usage_summary", self._run_groups(f)))

    async def get_cost_summary(
        self,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        pricing: dict[str, dict[str, dict[str, float]]] | None = None,
    ) -> CostSummary:
        """What the matched runs cost: ``cost_usd`` where set, else tokens × ``pricing``
        merged over the default table (contract 7.6, C7)."""
        f = self._run_filter(session_id, agent_id, provider, since, until)
        merge_pricing(pricing)  # refuse a bad table before touching storage
        groups = await self._call("get_cost_summary", self._run_groups(f))
        return cost_summary(groups, pricing)

    # ------------------------------------------------------------ 7.7 events

    def _event_search(
        self,
        session_ids: object,
        run_ids: object,
        types: object,
        providers: object,
        since: object,
        until: object,
        correlation_id: object,
        order_by: object,
    ) -> EventSearch:
        return EventSearch(
            session_ids=_many(session_ids, "session_ids", lambda s: check_id(s, "session_ids[]")),
            run_ids=_many(run_ids, "run_ids", lambda s: check_id(s, "run_ids[]")),
            types=_many(types, "types", lambda t: to_event_type(t).value),
            providers=_many(providers, "providers", lambda s: check_id(s, "providers[]")),
            since_us=_us(since, "since"),
            until_us=_us(until, "until"),
            correlation_id=_opt_id(correlation_id, "correlation_id"),
            order_by=_choice(order_by, EVENT_ORDERS, "order_by"),
        )

    async def search_events(
        self,
        *,
        session_ids: str | list[str] | None = None,
        run_ids: str | list[str] | None = None,
        types: str | list[str] | None = None,
        providers: str | list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        correlation_id: str | None = None,
        order_by: str = "timestamp_asc",
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Event]:
        """Events across sessions, a keyset page at a time (contract 7.7)."""
        q = self._event_search(
            session_ids, run_ids, types, providers, since, until, correlation_id, order_by
        )
        lim = _limit(limit, 100)
        after = decode_cursor(cursor, "search_events", q.order_by)
        items = await self._call("search_events", self._search_events(q, after, lim))
        next_cursor = (
            encode_cursor("search_events", q.order_by, event_position(items[-1], q.order_by))
            if items
            else None
        )
        return Page(items, next_cursor)

    async def count_events(
        self,
        *,
        session_ids: str | list[str] | None = None,
        run_ids: str | list[str] | None = None,
        types: str | list[str] | None = None,
        providers: str | list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        correlation_id: str | None = None,
    ) -> int:
        q = self._event_search(
            session_ids, run_ids, types, providers, since, until, correlation_id, "timestamp_asc"
        )
        return await self._call("count_events", self._count_events(q))

    # ------------------------------------------------------------ 8 retention

    async def soft_delete_expired_sessions(
        self, policy: RetentionPolicy, *, now: datetime | None = None
    ) -> int:
        """Mark sessions idle past the policy's age ``deleted_at = now`` (contract 8.2)."""
        return await self._soft_step(_policy(policy), _now(now), dry_run=False)

    async def hard_delete_expired_sessions(
        self, policy: RetentionPolicy, *, now: datetime | None = None
    ) -> int:
        """Delete, as ``delete_session`` does, sessions soft-deleted long enough ago."""
        return len(await self._hard_step(_policy(policy), _now(now), dry_run=False))

    async def prune_session_events(self, session_id: str, policy: RetentionPolicy) -> int:
        """Remove a session's oldest unprotected events beyond the policy's maximum."""
        check_id(session_id, "session_id")
        return await self._prune_step(session_id, _policy(policy), dry_run=False)

    async def _soft_step(self, policy: RetentionPolicy, now: datetime, dry_run: bool) -> int:
        days = policy.max_completed_session_age_days
        if days is None:
            return 0
        work = self._soft_delete(
            _cutoff_us(now, days), policy.exempt_statuses, policy.exempt_tags, now, dry_run
        )
        return await self._call("soft_delete_expired_sessions", work)

    async def _hard_step(self, policy: RetentionPolicy, now: datetime, dry_run: bool) -> list[str]:
        days = policy.hard_delete_after_days
        if days is None:
            return []
        op = "hard_delete_expired_sessions"
        cutoff = _cutoff_us(now, days)
        ids = await self._call(op, self._deleted_before(cutoff))
        if dry_run:
            return ids
        gone: list[str] = []
        for start in range(0, len(ids), policy.batch_size):
            batch = ids[start : start + policy.batch_size]
            gone += await self._call(op, self._delete_expired(batch, cutoff))
        return gone

    async def _prune_step(self, session_id: str, policy: RetentionPolicy, dry_run: bool) -> int:
        keep = policy.max_events_per_session
        if keep is None:
            return 0
        work = self._prune(
            session_id, keep, policy.prune_event_types_first, PROTECTED_TYPES, dry_run
        )
        return await self._call("prune_session_events", work)

    async def run_maintenance(
        self,
        policy: RetentionPolicy,
        *,
        dry_run: bool = False,
        now: datetime | None = None,
        _artifacts: ArtifactCleanup | None = None,
    ) -> MaintenanceReport:
        """Soft delete, hard delete, then prune, each step isolated: a failing step records
        its message in ``errors`` and counts 0 (contract 8.2)."""
        policy = _policy(policy)
        dry = _bool(dry_run, "dry_run")
        at = _now(now)
        started = time.perf_counter()
        report = MaintenanceReport(dry_run=dry)
        try:
            report.sessions_soft_deleted = await self._soft_step(policy, at, dry)
        except StoreError as err:
            report.errors.append(f"soft delete: {err}")
        gone: list[str] = []
        try:
            gone = await self._hard_step(policy, at, dry)
            report.sessions_hard_deleted = len(gone)
            if _artifacts is not None:
                report.artifacts_deleted = await _artifacts(gone, dry)
        except StoreError as err:
            report.errors.append(f"hard delete: {err}")
        if policy.max_events_per_session is not None:
            try:
                skip = set(gone)
                over = await self._call(
                    "run_maintenance", self._sessions_over(policy.max_events_per_session)
                )
                for sid in over:
                    if sid not in skip:
                        report.events_pruned += await self._prune_step(sid, policy, dry)
            except StoreError as err:
                report.errors.append(f"prune: {err}")
        report.duration_ms = (time.perf_counter() - started) * 1000
        return report

    async def health_check(self) -> list[str]:
        """Inconsistencies found in the stored data; empty means healthy (contract 8.2)."""
        return await self._call("health_check", self._health())

    # ------------------------------------------------------------ backend primitives

    def _unsupported(self) -> StoreError:
        name = getattr(self, "backend_name", type(self).__name__)
        return QueryNotImplementedError(
            f"the {name} store does not implement queries and retention yet",
            details={"reason": "not_implemented"},
        )

    async def _session_stats_parts(
        self, session_id: str
    ) -> tuple[list[RunGroup], tuple[int, int | None, int | None], int] | None:
        """The run groups, event stats and latest sequence of one session, or None when it
        has no record. From the primitives one after another; a backend that can read them
        in one trip to its storage (SQLite: one reader-thread hand-off instead of four)
        overrides this."""
        await self.get_session(session_id)
        groups = await self._run_groups(RunFilter(session_id))
        events = await self._event_stats(session_id)
        return groups, events, await self._latest_sequence(session_id)

    async def _search_sessions(
        self, q: SessionSearch, after: Position | None, limit: int
    ) -> list[Session]:
        """Matching sessions in ``q.order_by`` order (ties by id in the same direction),
        strictly after ``after`` = (sort value in µs, id); at most ``limit``."""
        raise self._unsupported()

    async def _count_sessions(self, q: SessionSearch) -> int:
        raise self._unsupported()

    async def _search_runs(self, q: RunSearch, after: Position | None, limit: int) -> list[Run]:
        """As ``_search_sessions``; ``token_usage_desc`` sorts by ``run_facts().total_tokens``."""
        raise self._unsupported()

    async def _run_groups(self, f: RunFilter) -> list[RunGroup]:
        """The matched runs added up by (provider, model, status); see ``query.group_runs``."""
        raise self._unsupported()

    async def _event_stats(self, session_id: str) -> tuple[int, int | None, int | None]:
        """(event count, first timestamp µs, last timestamp µs) of one session."""
        raise self._unsupported()

    async def _search_events(
        self, q: EventSearch, after: Position | None, limit: int
    ) -> list[Event]:
        """As ``_search_sessions``; positions are (timestamp µs, id) or (sequence, id)."""
        raise self._unsupported()

    async def _count_events(self, q: EventSearch) -> int:
        raise self._unsupported()

    async def _soft_delete(
        self,
        cutoff_us: int,
        exempt_statuses: tuple[str, ...],
        exempt_tags: tuple[str, ...],
        now: datetime,
        dry_run: bool,
    ) -> int:
        """Set ``deleted_at = now`` on sessions not deleted, not exempt, with ``updated_at``
        before the cutoff (checked again as each is marked); return how many (would be)."""
        raise self._unsupported()

    async def _deleted_before(self, cutoff_us: int) -> list[str]:
        """Ids of sessions whose ``deleted_at`` is before the cutoff, in id order."""
        raise self._unsupported()

    async def _delete_expired(self, session_ids: list[str], cutoff_us: int) -> list[str]:
        """Delete, as ``delete_session`` does, one batch of sessions found soft-deleted before
        the cutoff; return the ids deleted. Backends override it to delete a batch in one
        transaction or round trip (and may skip a session restored meanwhile)."""
        for sid in session_ids:
            await self._delete_session(sid)
        return session_ids

    async def _sessions_over(self, max_events: int) -> list[str]:
        """Ids of sessions that have a record and more than ``max_events`` events."""
        raise self._unsupported()

    async def _prune(
        self,
        session_id: str,
        max_events: int,
        first_types: tuple[str, ...],
        protected: frozenset[str],
        dry_run: bool,
    ) -> int:
        """Remove (or count) the oldest events beyond ``max_events``: first of
        ``first_types``, then of any unprotected type; never a protected one. Removed ids
        are forgotten; the counter never moves back. Atomic."""
        raise self._unsupported()

    async def _health(self) -> list[str]:
        """Runs without a session record, counters below the highest stored number, and any
        secondary structure out of step with the data."""
        raise self._unsupported()
