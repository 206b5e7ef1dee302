"""Google ADK's session and artifact services on any store of ours (extra ``adk``).

``StoreSessionService`` is an ADK ``BaseSessionService``; ``StoreArtifactService`` a
``BaseArtifactService``. Both take a store object or a URL, so one ADK app runs unchanged on
memory, SQLite, PostgreSQL or Redis. Only the public store ports are used.

How ADK's model maps onto ours (the layout is part of the on-disk format, keep it stable):

- an ADK session (app_name, user_id, session_id) is our session ``adk/s/<app>/<user>/<id>``
  (each part percent-encoded) whose ``agent_id`` is ``adk/<app>/<user>``: listing a user's
  sessions is the indexed ``list_sessions(agent_id=...)``, no event is loaded;
- its session-scoped state and ADK's ``last_update_time`` live in the session record, and every
  ADK event is one ``adk.event`` event holding the event's JSON. ``append_event`` writes record
  and event in one ``flush`` conditioned on the sequence the caller's copy was read at
  (``expected_sequence``), so a stale copy raises ADK's ``StaleSessionError``, across processes;
- ``app:`` and ``user:`` state are small logs (``adk/app/<app>``, ``adk/user/<app>/<user>``)
  whose newest ``adk.state`` event holds the whole state, replaced by conditional appends that
  retry on conflict: concurrent writers never lose each other's keys. They are applied after
  the session's own write, with ids derived from the ADK event, so retrying an append is safe;
- ``temp:`` keys follow ADK: visible in the caller's session object, never stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, cast
from urllib.parse import quote, unquote

from .. import (
    ArtifactStore,
    CustomEventType,
    DependencyNotAvailableError,
    Event,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    SessionStore,
    StoreError,
    open_artifact_store,
    open_session_store,
)
from ..retry import Retry, RetryPolicy, gave_up

try:
    from google.adk.artifacts import artifact_util
    from google.adk.artifacts.base_artifact_service import (
        ArtifactVersion,
        BaseArtifactService,
        ensure_part,
    )
    from google.adk.errors._stale_session_error import StaleSessionError
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.input_validation_error import InputValidationError
    from google.adk.errors.session_not_found_error import SessionNotFoundError
    from google.adk.events.event import Event as AdkEvent
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session as AdkSession
    from google.genai import types
    from pydantic_core import to_jsonable_python
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise DependencyNotAvailableError(
        "agent_session_store.integrations.adk needs the 'adk' extra: "
        "pip install 'agent-session-store[adk]'",
        details={"extra": "adk"},
    ) from exc

__all__ = [
    "SCHEME_PREFIX",
    "StoreArtifactService",
    "StoreSessionService",
    "register_adk_services",
]

#: ``agent-session-store+<our URL>`` is how ADK's service registry reaches our stores.
SCHEME_PREFIX = "agent-session-store+"
EVENT_TYPE = CustomEventType("adk.event")
CREATED_TYPE = CustomEventType("adk.session_created")
STATE_TYPE = CustomEventType("adk.state")
USER_TYPE = CustomEventType("adk.user")
APP_PREFIX, USER_PREFIX, TEMP_PREFIX = "app:", "user:", "temp:"
_STALE = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)
# Shared state is a compare-and-swap on its log: each lost race re-reads and tries again.
_STATE_RETRY = RetryPolicy(attempts=64, timeout=30.0, first_delay=0.0005, max_delay=0.02)
# save_artifact: each version another writer took moves this one up; a storm gives up.
_VERSION_RETRY = RetryPolicy(attempts=1000, timeout=30.0, first_delay=0.0, max_delay=0.0)


def _q(part: str) -> str:
    """One key segment: '/' and '%' are escaped, so no part can reach into another's."""
    return quote(part, safe="")


def _derived_id(*parts: str) -> str:
    """Deterministic event ids make every write an idempotent retry target."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return "adk_" + digest[:32]


def _is_conflict(exc: StoreError) -> bool:
    return exc.code == "sequence_conflict"


def _store_url(uri: str) -> str:
    return uri[len(SCHEME_PREFIX) :] if uri.startswith(SCHEME_PREFIX) else uri


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _json_safe(state: dict[str, Any]) -> dict[str, Any]:
    """ADK's persistent services coerce state to JSON the same way (unknown values -> str)."""
    return cast(dict[str, Any], to_jsonable_python(state, fallback=str))


def _split_state(state: dict[str, Any] | None) -> tuple[dict[str, Any], ...]:
    """(app, user, session) parts of a delta, prefixes removed, ``temp:`` dropped."""
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, value in (state or {}).items():
        if key.startswith(APP_PREFIX):
            app[key.removeprefix(APP_PREFIX)] = value
        elif key.startswith(USER_PREFIX):
            user[key.removeprefix(USER_PREFIX)] = value
        elif not key.startswith(TEMP_PREFIX):
            own[key] = value
    return _json_safe(app), _json_safe(user), _json_safe(own)


def _merge(app: dict[str, Any], user: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = dict(own)
    merged.update({APP_PREFIX + k: v for k, v in app.items()})
    merged.update({USER_PREFIX + k: v for k, v in user.items()})
    return merged


_SESSION_FIELDS = frozenset({"id", "app_name", "user_id", "state", "events", "last_update_time"})
#: Fast building relies on ADK's Session being these fields, one private attribute and no
#: extras; any other layout (a future ADK) takes the validating constructor instead.
_FAST_SESSIONS = (
    set(AdkSession.model_fields) == _SESSION_FIELDS
    and set(AdkSession.__private_attributes__) == {"_storage_update_marker"}
    and AdkSession.model_config.get("extra") == "forbid"
)
_FIELDS_SET = _SESSION_FIELDS - {"events"}  # what the constructor records without events
_new_model = object.__new__
_set_attr = object.__setattr__


def _marker(sequence: int, record: Session) -> str:
    """ADK's ``_storage_update_marker`` of a session read at ``sequence``: with the record's
    creation time, so a copy of a session since deleted and created again under the same id
    (whose numbers start over) is stale, as ADK's update-time marker makes it."""
    return f"{sequence}@{record.created_at.timestamp()}"


def _adk_session(
    sid: str,
    app_name: str,
    user_id: str,
    state: dict[str, Any],
    last_update_time: float,
    marker: str,
    events: list[AdkEvent] | None = None,
) -> AdkSession:
    """An ADK ``Session`` of values we built and checked ourselves, without pydantic
    re-validating them: in ``list_sessions`` of 10,000 sessions the validating constructor
    was most of the adapter's time. ``state`` must be a dict of the caller's own (it is not
    copied), ``events`` already-validated ADK events. Equal to what the constructor builds,
    fields-set included (tests hold it)."""
    if not _FAST_SESSIONS:
        kwargs: dict[str, Any] = {} if events is None else {"events": events}
        session = AdkSession(
            id=sid,
            app_name=app_name,
            user_id=user_id,
            state=state,
            last_update_time=last_update_time,
            **kwargs,
        )
        session._storage_update_marker = marker
        return session
    session = _new_model(AdkSession)
    _set_attr(
        session,
        "__dict__",
        {
            "id": sid,
            "app_name": app_name,
            "user_id": user_id,
            "state": state,
            "events": [] if events is None else events,
            "last_update_time": float(last_update_time),
        },
    )
    _set_attr(
        session, "__pydantic_fields_set__", set(_FIELDS_SET if events is None else _SESSION_FIELDS)
    )
    _set_attr(session, "__pydantic_extra__", None)
    _set_attr(session, "__pydantic_private__", {"_storage_update_marker": marker})
    return session


_BY_ID, _BY_USER, _BY_UPDATE = (
    attrgetter("id"),
    attrgetter("user_id"),
    attrgetter("last_update_time"),
)


def _scoped(app: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """The ``app:`` and ``user:`` keys of a merged state, built once per call and laid over
    every session's own state (user keys last, as ``_merge``)."""
    merged = {APP_PREFIX + k: v for k, v in app.items()}
    merged.update({USER_PREFIX + k: v for k, v in user.items()})
    return merged


def _check_names(**names: object) -> None:
    """ADK's own error for a bad id, raised before anything is read or written."""
    for name, value in names.items():
        if not isinstance(value, str) or not value:
            raise InputValidationError(f"{name} must be a non-empty string, got {value!r}.")


class _Keys:
    """Where each ADK thing lives in our store."""

    @staticmethod
    def session(app: str, user: str, sid: str) -> str:
        _check_names(app_name=app, user_id=user, session_id=sid)
        return f"adk/s/{_q(app)}/{_q(user)}/{_q(sid)}"

    @staticmethod
    def owner(app: str, user: str) -> str:
        _check_names(app_name=app, user_id=user)
        return f"adk/{_q(app)}/{_q(user)}"

    @staticmethod
    def app_state(app: str) -> str:
        return f"adk/app/{_q(app)}"

    @staticmethod
    def user_state(app: str, user: str) -> str:
        return f"adk/user/{_q(app)}/{_q(user)}"

    @staticmethod
    def users(app: str) -> str:
        return f"adk/users/{_q(app)}"


def _same_revision(rows: list[Event], sequence: int, config: GetSessionConfig | None) -> bool:
    """Whether events read beside a record written at ``sequence`` are exactly its history.

    Every write stores the record with the number of its one ``adk.event`` (number 1 is the
    creation), so they agree when the newest row read is that very event.
    """
    if config is not None and config.num_recent_events == 0:
        return True
    newest = rows[-1].sequence_number if rows else 0
    return newest == (sequence if sequence > 1 else 0)


def _session_run(record: Session) -> Run:
    """The one run every write of an ADK session goes through (``flush`` writes a run).

    Deterministic, so rewriting it on every append changes nothing; ADK invocations are the
    events' ``correlation_id``.
    """
    return Run(
        id="run_" + _derived_id("run", record.id)[4:],
        session_id=record.id,
        status=RunStatus.RUNNING,
        started_at=record.created_at,
        provider="google-adk",
    )


class StoreSessionService(BaseSessionService):
    """ADK sessions on a ``SessionStore`` (or a store URL, optionally ``agent-session-store+``).

    A store passed in stays the caller's; one opened from a URL is closed by ``close()``.
    ``uri=`` lets ADK's ``services.yaml`` build it; other keywords ADK passes are ignored.
    """

    def __init__(
        self, store: SessionStore | str | None = None, *, uri: str | None = None, **_: Any
    ) -> None:
        target = store if store is not None else uri
        if target is None:
            raise InputValidationError("StoreSessionService needs a store or a store URL")
        if isinstance(target, str):
            self._store: SessionStore = open_session_store(_store_url(target))
            self._owns = True
        else:
            self._store = target
            self._owns = False
        self._known_users: set[tuple[str, str]] = set()

    @property
    def store(self) -> SessionStore:
        return self._store

    async def close(self) -> None:
        if self._owns:
            await self._store.close()

    async def __aenter__(self) -> StoreSessionService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ create / get

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> AdkSession:
        sid = session_id if session_id is not None else str(uuid.uuid4())
        key = _Keys.session(app_name, user_id, sid)
        app_delta, user_delta, own = _split_state(state)
        now = time.time()
        record = Session(
            id=key,
            agent_id=_Keys.owner(app_name, user_id),
            status=SessionStatus.ACTIVE,
            metadata={
                "adk": {
                    "app_name": app_name,
                    "user_id": user_id,
                    "session_id": sid,
                    "sequence": 1,
                    "last_update_time": now,
                }
            },
            context={"state": own},
            created_at=_dt(now),
            updated_at=_dt(now),
        )
        created = Event(
            type=CREATED_TYPE,
            session_id=key,
            run_id=_session_run(record).id,
            timestamp=_dt(now),
            data={"app_name": app_name, "user_id": user_id, "session_id": sid},
        )
        try:
            # expected_sequence=0: the session must have no log yet, so two racing creates
            # of one id cannot both succeed.
            await self._store.flush(record, _session_run(record), [created], expected_sequence=0)
        except StoreError as exc:
            if _is_conflict(exc):
                raise AlreadyExistsError(f"Session with id {sid} already exists.") from None
            raise
        source = created.id
        app_state, user_state, _ = await asyncio.gather(
            self._merge_scope(_Keys.app_state(app_name), app_delta, source),
            self._merge_scope(_Keys.user_state(app_name, user_id), user_delta, source),
            self._register_user(app_name, user_id),
        )
        return _adk_session(
            sid, app_name, user_id, _merge(app_state, user_state, own), now, _marker(1, record)
        )

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> AdkSession | None:
        key = _Keys.session(app_name, user_id, session_id)
        # One round trip: the record and the events are read side by side, then checked to
        # be of one revision; only when a write fell between the two reads is the log read
        # again, bounded by the record's sequence.
        record, app_state, user_state, rows = await asyncio.gather(
            self._record(key),
            self._scope_state(_Keys.app_state(app_name)),
            self._scope_state(_Keys.user_state(app_name, user_id)),
            self._event_rows(key, None, config),
        )
        if record is None:
            return None
        meta = record.metadata["adk"]
        sequence: int = meta["sequence"]
        if not _same_revision(rows, sequence, config):
            rows = await self._event_rows(key, sequence, config)
        return _adk_session(
            session_id,
            app_name,
            user_id,
            _merge(app_state, user_state, record.context.get("state", {})),
            meta["last_update_time"],
            _marker(sequence, record),
            [AdkEvent.model_validate(row.data) for row in rows],
        )

    async def _event_rows(
        self, key: str, sequence: int | None, config: GetSessionConfig | None
    ) -> list[Event]:
        """The session's ``adk.event`` rows, oldest first, up to ``sequence`` when given."""
        query: dict[str, Any] = {"type": EVENT_TYPE}
        if sequence is not None:
            query["before"] = sequence + 1
        newest_first = False
        if config is not None:
            if config.num_recent_events == 0:
                return []
            if config.after_timestamp:
                query["since"] = _dt(config.after_timestamp)
            if config.num_recent_events is not None:
                query.update(order="desc", limit=config.num_recent_events)
                newest_first = True
        rows = await self._store.get_events(key, **query)
        if newest_first:
            rows.reverse()
        return rows

    async def _register_user(self, app_name: str, user_id: str) -> None:
        """The app's user directory, for listing every user's sessions; idempotent by id."""
        if (app_name, user_id) in self._known_users:
            return
        await self._store.append_event(
            Event(
                type=USER_TYPE,
                id=_derived_id(_Keys.users(app_name), user_id),
                session_id=_Keys.users(app_name),
                data={"user_id": user_id},
            )
        )
        self._known_users.add((app_name, user_id))

    async def _record(self, key: str) -> Session | None:
        try:
            return await self._store.get_session(key)
        except StoreError as exc:
            if exc.code == "session_not_found":
                return None
            raise

    # ------------------------------------------------------------------ list / delete

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """Indexed by owner; sessions come without events, oldest update first (as ADK)."""
        _check_names(app_name=app_name)
        app_log = _Keys.app_state(app_name)
        listings: list[tuple[str, list[Session], dict[str, Any]]] = []
        if user_id is not None:
            # The usual call: its three reads (app state, user state, the indexed listing,
            # which loads no event) in one round trip.
            app_state, records, user_state = await asyncio.gather(
                self._scope_state(app_log),
                self._store.list_sessions(agent_id=_Keys.owner(app_name, user_id)),
                self._scope_state(_Keys.user_state(app_name, user_id)),
            )
            listings.append((user_id, records, user_state))
        else:
            rows, app_state = await asyncio.gather(
                self._store.get_events(_Keys.users(app_name), type=USER_TYPE),
                self._scope_state(app_log),
            )
            for user in (row.data["user_id"] for row in rows):  # one user at a time
                records, user_state = await asyncio.gather(
                    self._store.list_sessions(agent_id=_Keys.owner(app_name, user)),
                    self._scope_state(_Keys.user_state(app_name, user)),
                )
                listings.append((user, records, user_state))
        found: list[AdkSession] = []
        add, build = found.append, _adk_session
        for user, records, user_state in listings:
            scoped = _scoped(app_state, user_state)
            for record in records:
                meta = record.metadata["adk"]
                state = record.context.get("state")  # the store's reads return our own copy
                if state is None:
                    state = {}
                if scoped:
                    state.update(scoped)
                when = meta["last_update_time"]
                marker = _marker(meta["sequence"], record)
                add(build(meta["session_id"], app_name, user, state, when, marker))
        # ADK's order (oldest update first, then user, then id) by stable sorts on keys the
        # sessions already hold: a key tuple per session cost more than building it (issue 10).
        found.sort(key=_BY_ID)
        if len(listings) > 1:
            found.sort(key=_BY_USER)
        found.sort(key=_BY_UPDATE)
        return ListSessionsResponse(sessions=found)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        await self._store.delete_session(_Keys.session(app_name, user_id, session_id))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        _check_names(app_name=app_name, user_id=user_id)
        return await self._scope_state(_Keys.user_state(app_name, user_id))

    # ------------------------------------------------------------------ append

    async def append_event(self, session: AdkSession, event: AdkEvent) -> AdkEvent:
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        key = _Keys.session(session.app_name, session.user_id, session.id)
        record = await self._record(key)
        if record is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        meta = record.metadata["adk"]
        expected = await self._expected_sequence(key, session, record)
        if expected != meta["sequence"]:
            raise StaleSessionError(_STALE)
        app_delta, user_delta, own_delta = _split_state(
            event.actions.state_delta if event.actions else None
        )
        updated = record.replace(
            context={**record.context, "state": {**record.context.get("state", {}), **own_delta}},
            metadata={
                **record.metadata,
                "adk": {**meta, "sequence": expected + 1, "last_update_time": event.timestamp},
            },
        )
        row = Event(
            type=EVENT_TYPE,
            id=_derived_id(key, event.id),
            session_id=key,
            run_id=_session_run(record).id,
            timestamp=_dt(event.timestamp),
            data=event.model_dump(mode="json", exclude_none=True),
            metadata={"author": event.author},
            provider="google-adk",
            correlation_id=event.invocation_id or None,
        )
        try:
            stored = await self._store.flush(
                updated, _session_run(updated), [row], expected_sequence=expected
            )
        except StoreError as exc:
            if _is_conflict(exc):
                raise StaleSessionError(_STALE) from None
            raise
        if app_delta or user_delta:
            await asyncio.gather(
                self._merge_scope(_Keys.app_state(session.app_name), app_delta, row.id),
                self._merge_scope(
                    _Keys.user_state(session.app_name, session.user_id), user_delta, row.id
                ),
            )
        session.last_update_time = event.timestamp
        session._storage_update_marker = _marker(cast(int, stored[0].sequence_number), updated)
        return self._commit_event_to_session(session, event)

    async def _expected_sequence(self, key: str, session: AdkSession, record: Session) -> int:
        """The sequence the caller's copy was read at, or -1 when it is of another session
        of the same id (deleted and created again since: its numbers start over).

        Sessions we built carry it as ADK's ``_storage_update_marker`` (``_marker``); for a
        hand-built or marker-less copy, ADK's own rule applies: it is current unless storage
        moved past its ``last_update_time`` and no longer ends with the copy's last event.
        """
        meta = record.metadata["adk"]
        marker = session._storage_update_marker
        if marker is not None:
            sequence = marker.partition("@")[0]
            if not sequence.isdigit() or marker != _marker(int(sequence), record):
                return -1  # not ours, or of another session under this id
            return int(sequence)
        current = cast(int, meta["sequence"])
        if meta["last_update_time"] <= session.last_update_time:
            return current
        latest = await self._store.get_events(key, type=EVENT_TYPE, order="desc", limit=1)
        if not session.events:
            return current if not latest else -1
        if latest and latest[0].data.get("id") == session.events[-1].id:
            return current
        return -1

    # ------------------------------------------------------------------ app/user state

    async def _scope_state(self, log_id: str) -> dict[str, Any]:
        rows = await self._store.get_events(log_id, order="desc", limit=1)
        return dict(rows[0].data["state"]) if rows else {}

    async def _merge_scope(self, log_id: str, delta: dict[str, Any], source: str) -> dict[str, Any]:
        """Apply ``delta`` to a shared state log with compare-and-swap retries; return it."""
        if not delta:
            return await self._scope_state(log_id)
        event_id = _derived_id(log_id, source)
        retry = Retry(_STATE_RETRY)
        while True:
            rows = await self._store.get_events(log_id, order="desc", limit=1)
            current = dict(rows[0].data["state"]) if rows else {}
            if rows and rows[0].id == event_id:
                return current  # this very write already landed (a retried append)
            expected = (rows[0].sequence_number or 0) if rows else 0
            new = {**current, **delta}
            try:
                await self._store.append_events(
                    [
                        Event(
                            type=STATE_TYPE,
                            id=event_id,
                            session_id=log_id,
                            data={"state": new, "source": source},
                        )
                    ],
                    expected_sequence=expected,
                )
            except StoreError as exc:
                if not _is_conflict(exc):
                    raise
                if not await retry.pause():
                    raise gave_up(
                        "adk",
                        "update_state",
                        retry,
                        f"the state of {log_id!r} kept changing",
                        log=log_id,
                    ) from None
                continue
            return new


# ---------------------------------------------------------------------- artifacts

_MAX_REFERENCE_DEPTH = 5
_HEADER_LIMIT = 1 << 16


def _mime_of(part: types.Part) -> str | None:
    if part.inline_data is not None:
        return part.inline_data.mime_type
    if part.text is not None:
        return "text/plain"
    if part.file_data is not None and not artifact_util.is_artifact_ref(part):
        return part.file_data.mime_type
    return None


def _encode_version(part: types.Part, header: dict[str, Any]) -> bytes:
    """One object per version: a JSON header line, then the payload (raw bytes stay raw)."""
    if part.inline_data is not None and part.inline_data.data is not None:
        header["kind"] = "inline"
        payload = part.inline_data.data
    elif part.text is not None and part.model_dump(exclude_none=True).keys() == {"text"}:
        header["kind"] = "text"
        payload = part.text.encode("utf-8")
    else:
        header["kind"] = "part"
        payload = part.model_dump_json(exclude_none=True).encode("utf-8")
    return json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n" + payload


def _decode_version(blob: bytes) -> tuple[dict[str, Any], types.Part]:
    head, _, payload = blob.partition(b"\n")
    header = json.loads(head)
    kind = header["kind"]
    if kind == "inline":
        part = types.Part(inline_data=types.Blob(mime_type=header.get("mime_type"), data=payload))
    elif kind == "text":
        part = types.Part(text=payload.decode("utf-8"))
    else:
        part = types.Part.model_validate_json(payload)
    return header, part


class StoreArtifactService(BaseArtifactService):
    """ADK artifacts on an ``ArtifactStore`` (or its URL): versions 0, 1, 2, … per filename.

    Every version is one object written with the create-only ``put(..., if_absent=True)``,
    so two concurrent saves never share a version number: the loser takes the next one.
    Filenames starting with ``user:`` are user-scoped (shared by the user's sessions).
    """

    def __init__(
        self,
        store: ArtifactStore | str | None = None,
        *,
        uri: str | None = None,
        prefix: str = "adk/",
        **_: Any,
    ) -> None:
        target = store if store is not None else uri
        if target is None:
            raise InputValidationError("StoreArtifactService needs a store or a store URL")
        if isinstance(target, str):
            self._store: ArtifactStore = open_artifact_store(_store_url(target))
            self._owns = True
        else:
            self._store = target
            self._owns = False
        self._prefix = prefix

    @property
    def store(self) -> ArtifactStore:
        return self._store

    async def close(self) -> None:
        if self._owns:
            await self._store.close()

    def _base(self, app: str, user: str, filename: str, session_id: str | None) -> str:
        """The key prefix of one artifact's versions; every segment is escaped."""
        for value, name in ((app, "app_name"), (user, "user_id"), (filename, "filename")):
            if not isinstance(value, str) or not value:
                raise InputValidationError(f"{name} must be a non-empty string.")
        scope = f"{self._prefix}apps/{_q(app)}/users/{_q(user)}/"
        if filename.startswith(USER_PREFIX):
            return f"{scope}user/{_q(filename)}/"
        if not session_id:
            raise InputValidationError("Session ID must be provided for session-scoped artifacts.")
        return f"{scope}sessions/{_q(session_id)}/{_q(filename)}/"

    async def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        cursor: str | None = None
        while True:
            page = await self._store.list_keys(prefix, cursor=cursor)
            keys.extend(page.keys)
            if page.next_cursor is None:
                return keys
            cursor = page.next_cursor

    async def _versions(self, base: str) -> list[int]:
        return sorted(
            int(rest) for key in await self._keys(base) if (rest := key[len(base) :]).isdigit()
        )

    async def save_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        artifact: types.Part | dict[str, Any],
        session_id: str | None = None,
        custom_metadata: dict[str, Any] | None = None,
    ) -> int:
        part = ensure_part(artifact)
        base = self._base(app_name, user_id, filename, session_id)
        if artifact_util.is_artifact_ref(part):
            parsed = artifact_util.parse_artifact_uri(cast(str, part.file_data.file_uri))  # type: ignore[union-attr]
            if not parsed:
                raise InputValidationError(
                    f"Invalid artifact reference URI: {part.file_data.file_uri}"  # type: ignore[union-attr]
                )
            artifact_util.validate_artifact_reference_scope(
                app_name=app_name, user_id=user_id, session_id=session_id, parsed_uri=parsed
            )
        elif part.inline_data is None and part.text is None and part.file_data is None:
            raise InputValidationError("Not supported artifact type.")
        versions = await self._versions(base)
        version = versions[-1] + 1 if versions else 0
        header = {
            "v": 1,
            "mime_type": _mime_of(part),
            "custom_metadata": dict(custom_metadata or {}),
            "create_time": time.time(),
        }
        blob = _encode_version(part, header)
        retry = Retry(_VERSION_RETRY)
        while True:
            try:
                await self._store.put(base + str(version), blob, if_absent=True)
            except StoreError as exc:
                if exc.code != "already_exists":
                    raise
                if not await retry.pause():
                    raise gave_up(
                        "adk",
                        "save_artifact",
                        retry,
                        f"other writers kept taking the next version of {base!r}",
                    ) from None
                version += 1  # another writer took it; never overwrite
                continue
            return version

    async def load_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
        version: int | None = None,
    ) -> types.Part | None:
        return await self._load(app_name, user_id, filename, session_id, version, 0)

    async def _load(
        self,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None,
        version: int | None,
        depth: int,
    ) -> types.Part | None:
        base = self._base(app_name, user_id, filename, session_id)
        if version is None:
            versions = await self._versions(base)
            if not versions:
                return None
            version = versions[-1]
        if version < 0:
            return None
        try:
            blob = await self._store.get(base + str(version))
        except StoreError as exc:
            if exc.code == "not_found":
                return None
            raise
        _, part = _decode_version(blob)
        if artifact_util.is_artifact_ref(part):
            target = artifact_util.resolve_artifact_reference(
                file_uri=cast(str, part.file_data.file_uri),  # type: ignore[union-attr]
                app_name=app_name,
                user_id=user_id,
                session_id=session_id,
                remaining_depth=_MAX_REFERENCE_DEPTH - depth,
            )
            return await self._load(
                target.app_name,
                target.user_id,
                target.filename,
                target.session_id,
                target.version,
                depth + 1,
            )
        if part == types.Part():
            return None
        return part

    async def list_artifact_keys(
        self, *, app_name: str, user_id: str, session_id: str | None = None
    ) -> list[str]:
        scope = f"{self._prefix}apps/{_q(app_name)}/users/{_q(user_id)}/"
        prefixes = [scope + "user/"]
        if session_id:
            prefixes.append(f"{scope}sessions/{_q(session_id)}/")
        names: set[str] = set()
        for prefix in prefixes:
            for key in await self._keys(prefix):
                name, _, rest = key[len(prefix) :].partition("/")
                if rest.isdigit():
                    names.add(unquote(name))
        return sorted(names)

    async def delete_artifact(
        self, *, app_name: str, user_id: str, filename: str, session_id: str | None = None
    ) -> None:
        base = self._base(app_name, user_id, filename, session_id)
        for version in await self._versions(base):
            await self._store.delete(base + str(version))

    async def list_versions(
        self, *, app_name: str, user_id: str, filename: str, session_id: str | None = None
    ) -> list[int]:
        return await self._versions(self._base(app_name, user_id, filename, session_id))

    async def list_artifact_versions(
        self, *, app_name: str, user_id: str, filename: str, session_id: str | None = None
    ) -> list[ArtifactVersion]:
        base = self._base(app_name, user_id, filename, session_id)
        found = []
        for version in await self._versions(base):
            info = await self._version_info(app_name, user_id, filename, session_id, base, version)
            if info is not None:
                found.append(info)
        return found

    async def get_artifact_version(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
        version: int | None = None,
    ) -> ArtifactVersion | None:
        base = self._base(app_name, user_id, filename, session_id)
        if version is None:
            versions = await self._versions(base)
            if not versions:
                return None
            version = versions[-1]
        return await self._version_info(app_name, user_id, filename, session_id, base, version)

    async def _version_info(
        self,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None,
        base: str,
        version: int,
    ) -> ArtifactVersion | None:
        """Reads only the header line of the version's object, not its payload."""
        if version < 0:
            return None
        head = b""
        stream = self._store.get_stream(base + str(version))
        try:
            async for chunk in stream:
                head += chunk
                if b"\n" in head or len(head) > _HEADER_LIMIT:
                    break
        except StoreError as exc:
            if exc.code == "not_found":
                return None
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        header = json.loads(head.partition(b"\n")[0])
        scoped_session = None if filename.startswith(USER_PREFIX) else session_id
        return ArtifactVersion(
            version=version,
            canonical_uri=artifact_util.get_artifact_uri(
                app_name, user_id, filename, version, scoped_session
            ),
            custom_metadata=header.get("custom_metadata") or {},
            create_time=header["create_time"],
            mime_type=header.get("mime_type"),
        )


# ---------------------------------------------------------------------- ADK's registry

_SESSION_SCHEMES = ("memory", "sqlite", "postgresql", "postgres", "redis", "rediss")
_ARTIFACT_SCHEMES = ("memory", "file", "s3")


def register_adk_services(registry: Any = None) -> None:
    """Teach ADK's service registry the ``agent-session-store+<url>`` URIs.

    ``adk web``/``adk api_server`` import ``services.py`` from the agents directory; one line
    there (``register_adk_services()``) makes ``--session_service_uri
    "agent-session-store+sqlite:///sessions.db"`` (or ``+postgresql://…``, ``+redis://…``) and
    ``--artifact_service_uri "agent-session-store+file:///artifacts"`` use our stores.
    """
    if registry is None:
        from google.adk.cli.service_registry import get_service_registry

        registry = get_service_registry()

    def session_factory(uri: str, **kwargs: Any) -> StoreSessionService:
        return StoreSessionService(uri=uri)

    def artifact_factory(uri: str, **kwargs: Any) -> StoreArtifactService:
        return StoreArtifactService(uri=uri)

    register_session: Callable[[str, Any], None] = registry.register_session_service
    register_artifact: Callable[[str, Any], None] = registry.register_artifact_service
    for scheme in _schemes(_SESSION_SCHEMES):
        register_session(scheme, session_factory)
    for scheme in _schemes(_ARTIFACT_SCHEMES):
        register_artifact(scheme, artifact_factory)


def _schemes(names: Iterable[str]) -> list[str]:
    return [SCHEME_PREFIX + name for name in names]
