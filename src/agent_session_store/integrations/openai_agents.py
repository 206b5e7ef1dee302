"""The OpenAI Agents SDK's ``Session`` protocol on any session store of ours.

Each conversation item is one event of type ``openai.<item type>`` (``openai.message``,
``openai.function_call``, ``openai.function_call_output``, ...), so the CLI and queries show
messages and tool calls as what they are. The log stays append-only: ``pop_item`` appends a
``history_rewound`` event that hides the popped item from the visible history (auditors still
read it), made conditional on the session's latest sequence so that two processes popping at
once pop two different items, never the same one twice.
"""

from __future__ import annotations

import re
from typing import Any, Self, cast

from ..errors import DependencyNotAvailableError, SequenceConflictError, SessionNotFoundError
from ..models import Event, EventType, EventTypeLike, Session, check_id, to_event_type
from ..ports import NewestPayloads, SessionStore
from ..retry import Retry, RetryPolicy
from .loop import StoreLoop

try:
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import (
        SessionSettings,
        coerce_session_settings,
        resolve_session_limit,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise DependencyNotAvailableError(
        "agent_session_store.integrations.openai_agents needs the 'openai-agents' extra: "
        "pip install 'agent-session-store[openai-agents]'",
        details={"extra": "openai-agents"},
    ) from exc

__all__ = ["ITEM_NAMESPACE", "OpenAIAgentsSession", "item_event_type"]

ITEM_NAMESPACE = "openai"
_PREFIX = ITEM_NAMESPACE + "."
_NOT_NAME = re.compile(r"[^a-z0-9_]+")
#: How often and how long pop_item re-reads after losing a race before giving up: each lost
#: race means another writer made progress, so this bounds only a pathological storm.
_POP_RETRY = RetryPolicy(attempts=1000, timeout=30.0, first_delay=0.0005, max_delay=0.02)


#: Event types by item kind (a few kinds exist): the name rules run once per kind.
_KIND_TYPES: dict[str, EventTypeLike] = {}
_MAX_KINDS = 256


def _item_kind(raw: dict[str, Any]) -> str:
    """An item's ``type``; an item with a role and no type is a message."""
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        kind = "message" if "role" in raw else "item"
    return kind


def _type_name(kind: str) -> str:
    name = _NOT_NAME.sub("_", kind.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = "item"
    return _PREFIX + name[: 64 - len(_PREFIX)]


def item_event_type(item: TResponseInputItem) -> str:
    """``openai.<type>`` for an item; an item with a role and no type is a message."""
    return _type_name(_item_kind(cast(dict[str, Any], item)))


def _event_type(raw: dict[str, Any]) -> EventTypeLike:
    """``item_event_type`` as an event type, remembered per kind."""
    kind = _item_kind(raw)
    found = _KIND_TYPES.get(kind)
    if found is None:
        found = to_event_type(_type_name(kind))
        if len(_KIND_TYPES) < _MAX_KINDS:
            _KIND_TYPES[kind] = found
    return found


class OpenAIAgentsSession:
    """An ``agents.memory.Session`` whose history is one session of our event log.

    Pass a store already opened in the loop the SDK runs in (fastest), or a ``StoreLoop``
    (e.g. ``StoreLoop.in_thread(url)``) to share one store across loops and threads;
    ``from_url`` does the latter and closes what it opened in ``close()``.
    ``store_session_id`` names the session in the store when it should differ from the SDK's
    ``session_id`` (a tenant prefix, say).
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        store: SessionStore | StoreLoop,
        *,
        store_session_id: str | None = None,
        agent_id: str = "openai-agents",
        session_settings: SessionSettings | dict[str, Any] | None = None,
        clear_deletes: bool = False,
    ) -> None:
        self.session_id = check_id(session_id, "session_id")
        self._sid = check_id(
            session_id if store_session_id is None else store_session_id, "store_session_id"
        )
        self._agent_id = check_id(agent_id, "agent_id")
        self._runner = store if isinstance(store, StoreLoop) else StoreLoop(store)
        self._owns_runner = False
        self._has_record = False
        self._clear_deletes = clear_deletes
        self._narrow: bool | None = None  # the store has get_newest_payloads (asked once)
        self.session_settings = (
            coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )

    @classmethod
    def from_url(cls, session_id: str, url: str, **kwargs: Any) -> Self:
        """A session on the store at ``url``, opened on a private loop thread."""
        runner = StoreLoop.in_thread(url)
        session = cls(session_id, runner, **kwargs)
        session._owns_runner = True
        return session

    @property
    def store(self) -> SessionStore:
        return self._runner.store

    @property
    def store_session_id(self) -> str:
        return self._sid

    async def close(self) -> None:
        if self._owns_runner:
            await self._runner.aclose()

    # ------------------------------------------------------------ the Session protocol

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest ``limit`` visible items, oldest first (all of them for None)."""
        n = resolve_session_limit(limit, self.session_settings)
        if n is not None and n <= 0:
            return []
        return await self._runner.run(lambda: self._read_items(n))

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items as one atomic batch: all of them or none."""
        if not items:
            return
        events = [self._event(item) for item in items]
        await self._runner.run(lambda: self._append(events))

    async def pop_item(self) -> TResponseInputItem | None:
        """Hide the newest visible item behind a rewind and return it (None when empty)."""
        return await self._runner.run(self._pop)

    async def clear_session(self) -> None:
        """Rewind the whole visible history (kept for audit), or delete it with
        ``clear_deletes=True``."""
        await self._runner.run(self._clear)

    # ------------------------------------------------------------ on the store's loop

    async def _read_items(self, limit: int | None) -> list[TResponseInputItem]:
        store = self.store
        if limit is None:
            return [_item(e) for e in await store.get_visible_events(self._sid) if _ours(e)]
        tail = await self._plain_tail(limit)
        if tail is not None:
            return tail
        window = limit
        while True:
            visible = await store.get_visible_events(self._sid, limit=window)
            items = [_item(e) for e in visible if _ours(e)]
            if len(items) >= limit or len(visible) < window:
                return items[-limit:]
            window *= 2  # other writers' events sit among ours: read further back

    async def _plain_tail(self, limit: int) -> list[TResponseInputItem] | None:
        """``_newest_plain``'s items: on our stores one read of (type, data) per row, no
        whole Events built (half the CPU of ``get_items(50)`` on SQLite)."""
        store = self.store
        if self._narrow is None:
            self._narrow = isinstance(store, NewestPayloads)  # 3 us: asked once
        if not self._narrow:  # a store of someone else's: whole events
            newest = await self._newest_plain(limit)
            return None if newest is None else [_item(e) for e in newest]
        rows = await cast(NewestPayloads, store).get_newest_payloads(self._sid, limit=limit)
        prefix = _PREFIX
        for kind, _ in rows:
            if not kind.startswith(prefix):
                return None
        return [data["item"] for _, data in reversed(rows)]

    async def _newest_plain(self, limit: int) -> list[Event] | None:
        """The newest ``limit`` events, oldest first, when they are all items: nothing newer
        than a rewind can be hidden, so with no rewind among them they ARE the visible tail
        (one indexed read of exactly ``limit`` rows). None when the general walk is needed."""
        newest = await self.store.get_events(self._sid, order="desc", limit=limit)
        if all(_ours(e) for e in newest):
            newest.reverse()
            return newest
        return None

    async def _append(self, events: list[Event]) -> None:
        await self._ensure_record()
        await self.store.append_events(events)

    async def _pop(self) -> TResponseInputItem | None:
        store = self.store
        retry = Retry(_POP_RETRY)
        while True:
            latest = await store.get_latest_sequence(self._sid)
            if latest == 0:
                return None
            target = await self._newest_item()
            if target is None:
                return None
            seq = target.sequence_number
            assert seq is not None
            rewind = Event(
                type=EventType.HISTORY_REWOUND,
                session_id=self._sid,
                data={"to_sequence": seq - 1},
                metadata={"popped_event_id": target.id},
                provider=ITEM_NAMESPACE,
            )
            try:
                # Refused when anything was appended since ``latest`` was read, another pop
                # included: then the newest item may be another one, so read again.
                await store.append_events([rewind], expected_sequence=latest)
            except SequenceConflictError:
                if await retry.pause():
                    continue
                raise SequenceConflictError(
                    f"pop_item lost {retry.attempt} races in a row in {retry.elapsed:.1f} s on "
                    f"session {self._sid!r}",
                    details={"session_id": self._sid, "attempts": retry.attempt},
                ) from None
            return _item(target)

    async def _newest_item(self) -> Event | None:
        newest = await self._newest_plain(1)
        if newest is not None:
            return newest[0] if newest else None
        window = 1
        while True:
            visible = await self.store.get_visible_events(self._sid, limit=window)
            for event in reversed(visible):
                if _ours(event):
                    return event
            if len(visible) < window:
                return None
            window *= 4

    async def _clear(self) -> None:
        store = self.store
        if self._clear_deletes:
            await store.delete_session(self._sid)
            self._has_record = False
            return
        if await store.get_latest_sequence(self._sid) == 0:
            return
        await store.append_event(
            Event(
                type=EventType.HISTORY_REWOUND,
                session_id=self._sid,
                data={"to_sequence": 0},
                metadata={"cleared": True},
                provider=ITEM_NAMESPACE,
            )
        )

    async def _ensure_record(self) -> None:
        """A session record, so ``list_sessions`` and the CLI find the conversation."""
        if self._has_record:
            return
        store = self.store
        try:
            await store.get_session(self._sid)
        except SessionNotFoundError:
            await store.save_session(
                Session(
                    id=self._sid,
                    agent_id=self._agent_id,
                    metadata={"framework": "openai-agents", "sdk_session_id": self.session_id},
                )
            )
        self._has_record = True

    def _event(self, item: TResponseInputItem) -> Event:
        raw = cast(dict[str, Any], item)
        role = raw.get("role")
        return Event(
            type=_event_type(raw),
            session_id=self._sid,
            data={"item": raw},
            metadata={"role": role} if isinstance(role, str) else {},
            provider=ITEM_NAMESPACE,
        )


def _ours(event: Event) -> bool:
    return event.type.value.startswith(_PREFIX)


def _item(event: Event) -> TResponseInputItem:
    return cast("TResponseInputItem", event.data["item"])
