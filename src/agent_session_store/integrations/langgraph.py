"""A LangGraph checkpointer (``BaseCheckpointSaver``, sync and async) on any session store.

One LangGraph thread is one session of ours (``<prefix><thread_id>``, with a session record
so ``list_sessions(agent_id=...)`` lists threads). Each ``put`` appends a
``langgraph.checkpoint`` event holding the whole checkpoint (every channel value, so a read
never walks back for older blobs); each ``put_writes`` appends a ``langgraph.writes`` event.
Values that are plain JSON are stored as JSON, readable by our CLI and queries and never
base64-inflated; anything else goes through the saver's serde and is stored base64-encoded.

Removing checkpoints keeps the log append-only: ``prune(keep_latest)`` and
``delete_for_runs`` append, in one conditional batch, a ``history_rewound`` hiding the
thread's history followed by copies of what is kept, so concurrent writers never lose a
checkpoint to a prune (a prune that raced a write re-reads and tries again).
``delete_thread`` and ``prune(strategy="delete")`` delete the session. ``copy_thread`` is
``fork_session``.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Self, cast

from ..errors import (
    DependencyNotAvailableError,
    SequenceConflictError,
    SessionNotFoundError,
    ValidationError,
)
from ..models import CustomEventType, Event, EventType, Session
from ..ports import NewestPayloads, SessionStore
from ..retry import Retry, RetryPolicy
from .loop import StoreLoop

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise DependencyNotAvailableError(
        "agent_session_store.integrations.langgraph needs the 'langgraph' extra: "
        "pip install 'agent-session-store[langgraph]'",
        details={"extra": "langgraph"},
    ) from exc

__all__ = ["CHECKPOINT", "WRITES", "StoreCheckpointSaver"]

# ``list`` is a method of the saver, so annotations inside the class use these names.
_Events = list[Event]
_Tuples = list[CheckpointTuple]
_Strs = list[str]
_Datas = list[dict[str, Any]]  # events' data

CHECKPOINT = CustomEventType("langgraph.checkpoint")
WRITES = CustomEventType("langgraph.writes")
# A rewrite re-reads after a concurrent put won; past this the thread is too busy to rewrite.
_REWRITE_RETRY = RetryPolicy(attempts=100, timeout=30.0, first_delay=0.0005, max_delay=0.02)
_HEAD = 8  # a checkpoint and its pending writes usually end a thread
_REWIND = EventType.HISTORY_REWOUND.value
_PAGE = 1000


class StoreCheckpointSaver(BaseCheckpointSaver[Any]):
    """LangGraph checkpoints and pending writes as events of our log.

    Give it a store opened in the loop the graph runs in (async graphs; sync calls are then
    accepted from other threads), or a ``StoreLoop`` / ``from_url`` for sync graphs and for
    sharing one store across loops.
    """

    def __init__(
        self,
        store: SessionStore | StoreLoop,
        *,
        prefix: str = "langgraph:",
        agent_id: str = "langgraph",
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if isinstance(store, StoreLoop):
            self._runner = store
        else:
            self._runner = StoreLoop(store, _running_loop())
        self._prefix = prefix
        self._agent_id = agent_id
        self._owns_runner = False
        self._known: set[str] = set()  # sessions known to have a record
        self._narrow: bool | None = None  # the store has get_newest_payloads (asked once)
        # Plain JSON skips serde only when serde is the stock one: an encrypting serde must
        # see every value.
        self._plain_json = type(self.serde) is JsonPlusSerializer

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """A saver on the store at ``url``, opened on a private loop thread."""
        saver = cls(StoreLoop.in_thread(url), **kwargs)
        saver._owns_runner = True
        return saver

    @property
    def store(self) -> SessionStore:
        return self._runner.store

    def session_id(self, thread_id: str) -> str:
        """The session of ours that holds a thread."""
        return f"{self._prefix}{thread_id}"

    def close(self) -> None:
        if self._owns_runner:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ async API

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._runner.run(lambda: self._get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await self._runner.run(lambda: self._list(config, filter, before, limit))
        for tup in found:
            yield tup

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._runner.run(lambda: self._put(config, checkpoint, metadata))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._runner.run(lambda: self._put_writes(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        await self._runner.run(lambda: self._delete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._runner.run(lambda: self._delete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._runner.run(lambda: self._copy_thread(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._runner.run(lambda: self._prune(thread_ids, strategy))

    # ------------------------------------------------------------ sync API (same work)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._runner.run_sync(lambda: self._get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return iter(self._runner.run_sync(lambda: self._list(config, filter, before, limit)))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._runner.run_sync(lambda: self._put(config, checkpoint, metadata))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._runner.run_sync(lambda: self._put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._runner.run_sync(lambda: self._delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._runner.run_sync(lambda: self._delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._runner.run_sync(lambda: self._copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._runner.run_sync(lambda: self._prune(thread_ids, strategy))

    # ------------------------------------------------------------ values

    def _enc(self, value: Any) -> dict[str, Any]:
        if self._plain_json and _is_plain_json(value):
            return {"json": value}
        kind, blob = self.serde.dumps_typed(value)
        return {"type": kind, "b64": base64.b64encode(blob).decode("ascii")}

    def _dec(self, cell: dict[str, Any]) -> Any:
        if "json" in cell:
            return cell["json"]
        return self.serde.loads_typed((cell["type"], base64.b64decode(cell["b64"])))

    # ------------------------------------------------------------ writes to the log

    async def _put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata
    ) -> RunnableConfig:
        conf = config["configurable"]
        thread_id = _thread_id(conf)
        ns = conf.get("checkpoint_ns", "") or ""
        parent = conf.get("checkpoint_id")
        body: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = body.pop("channel_values", None) or {}
        md = get_checkpoint_metadata(config, metadata)
        run_id = md.get("run_id")
        sid = self.session_id(thread_id)
        event = Event(
            type=CHECKPOINT,
            session_id=sid,
            run_id=run_id if isinstance(run_id, str) and run_id else None,
            data={
                "ns": ns,
                "id": checkpoint["id"],
                "parent": parent,
                "checkpoint": self._enc(body),
                "values": {k: self._enc(v) for k, v in values.items()},
                "metadata": self._enc(md),
            },
        )
        await self._ensure_record(sid)
        await self.store.append_events([event])
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> None:
        if not writes:
            return
        conf = config["configurable"]
        thread_id = _thread_id(conf)
        ns = conf.get("checkpoint_ns", "") or ""
        checkpoint_id = conf["checkpoint_id"]
        rows: list[tuple[int, str, dict[str, Any]]] = [
            (WRITES_IDX_MAP.get(channel, idx), channel, self._enc(value))
            for idx, (channel, value) in enumerate(writes)
        ]
        sid = self.session_id(thread_id)
        fields: dict[str, Any] = {}
        if all(row[0] >= 0 for row in rows):
            # A retried call maps to the stored event (contract 3.8.4): no duplicate row.
            key = "\x1f".join([sid, ns, checkpoint_id, task_id, *(str(r[0]) for r in rows)])
            fields["id"] = "evt_" + hashlib.sha256(key.encode()).hexdigest()[:32]
        event = Event(
            type=WRITES,
            session_id=sid,
            data={
                "ns": ns,
                "checkpoint_id": checkpoint_id,
                "task_id": task_id,
                "task_path": task_path,
                "writes": [list(row) for row in rows],
            },
            **fields,
        )
        await self.store.append_events([event])

    async def _ensure_record(self, sid: str) -> None:
        if sid in self._known:
            return
        try:
            await self.store.get_session(sid)
        except SessionNotFoundError:
            await self.store.save_session(
                Session(id=sid, agent_id=self._agent_id, metadata={"framework": "langgraph"})
            )
        self._known.add(sid)

    # ------------------------------------------------------------ reads

    async def _newest_first(self, sid: str, head: bool = True) -> AsyncIterator[Event]:
        """The thread's visible events, newest first.

        The newest few come from one plain newest-first read (unless ``head`` is False: the
        caller has looked at them already): with no rewind among them nothing can hide them.
        Past that (or when a rewind shows up), the visible history is read in growing
        windows."""
        seen_below: int | None = None
        if head:
            newest = await self.store.get_events(sid, order="desc", limit=_HEAD)
            if all(e.type != EventType.HISTORY_REWOUND for e in newest):
                for event in newest:
                    seen_below = event.sequence_number
                    yield event
                if len(newest) < _HEAD:
                    return
        window = 64
        while True:
            visible = await self.store.get_visible_events(sid, limit=window)
            for event in reversed(visible):
                seq = event.sequence_number
                assert seq is not None
                if seen_below is None or seq < seen_below:
                    seen_below = seq
                    yield event
            if len(visible) < window:
                return
            window = min(window * 4, 1 << 20)

    async def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread_id = _thread_id(conf)
        ns = conf.get("checkpoint_ns", "") or ""
        wanted = get_checkpoint_id(config)
        sid = self.session_id(thread_id)
        store = self.store
        if self._narrow is None:
            self._narrow = isinstance(store, NewestPayloads)  # asked once
        writes: _Datas = []
        head = True
        if self._narrow:
            # On our stores the newest few as (type, data), no Event built: the latest
            # checkpoint is nearly always among them. A rewind among them, or a checkpoint
            # further back, takes the walk below, from the newest again.
            newest = await cast(NewestPayloads, store).get_newest_payloads(sid, limit=_HEAD)
            if all(kind != _REWIND for kind, _ in newest):
                for kind, data in newest:
                    if _matches(ns, wanted, kind, data, writes):
                        return self._tuple(thread_id, data, writes)
                if len(newest) < _HEAD:
                    return None
                head = False  # the walk goes straight to its windows
                writes.clear()
        async for event in self._newest_first(sid, head):
            if _matches(ns, wanted, event.type.value, event.data, writes):
                return self._tuple(thread_id, event.data, writes)
        return None

    async def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> _Tuples:
        if limit is not None and limit <= 0:
            return []
        conf = config["configurable"] if config is not None else {}
        threads = [_thread_id(conf)] if conf.get("thread_id") is not None else None
        if threads is None:
            threads = await self._thread_ids()
        ns = conf.get("checkpoint_ns")
        only_id = conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before is not None else None
        out: _Tuples = []
        for thread_id in threads:
            writes: dict[tuple[str, str], _Events] = {}
            seen: set[tuple[str, str]] = set()
            async for event in self._newest_first(self.session_id(thread_id)):
                data = event.data
                if ns is not None and data.get("ns") != ns:
                    continue
                if event.type == WRITES:
                    writes.setdefault((data["ns"], data["checkpoint_id"]), []).append(event)
                    continue
                if event.type != CHECKPOINT:
                    continue
                key = (data["ns"], data["id"])
                if key in seen:
                    continue  # an older copy of a checkpoint put again
                seen.add(key)
                if only_id is not None and data["id"] != only_id:
                    continue
                if before_id is not None and data["id"] >= before_id:
                    continue
                tup = self._tuple(thread_id, data, [w.data for w in writes.get(key, [])])
                if filter and any(tup.metadata.get(k) != v for k, v in filter.items()):
                    continue
                out.append(tup)
                if limit is not None and len(out) >= limit:
                    return out
        return out

    async def _thread_ids(self) -> _Strs:
        found: _Strs = []
        offset = 0
        while True:
            page = await self.store.list_sessions(
                agent_id=self._agent_id, limit=_PAGE, offset=offset
            )
            found += [s.id[len(self._prefix) :] for s in page if s.id.startswith(self._prefix)]
            if len(page) < _PAGE:
                return found
            offset += _PAGE

    def _tuple(self, thread_id: str, data: dict[str, Any], writes: _Datas) -> CheckpointTuple:
        """The checkpoint event's data as a tuple, with the data of the writes events newer
        than it (newest first); only the writes that name it are used."""
        checkpoint = cast(Checkpoint, self._dec(data["checkpoint"]))
        checkpoint["channel_values"] = {k: self._dec(v) for k, v in data["values"].items()}
        ns = data["ns"]
        pending: dict[tuple[str, int], tuple[str, str, Any, str]] = {}
        for wd in reversed(writes):  # oldest first: the first regular write of a key wins
            if wd["checkpoint_id"] != data["id"]:
                continue
            for idx, channel, cell in wd["writes"]:
                key = (wd["task_id"], idx)
                if idx >= 0 and key in pending:
                    continue
                pending[key] = (wd["task_id"], channel, cell, wd.get("task_path", ""))
        ordered = sorted(pending.items(), key=lambda kv: writes_sort_key(kv[1][3], *kv[0]))
        parent = data.get("parent")
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": data["id"],
                }
            },
            checkpoint=checkpoint,
            metadata=cast(CheckpointMetadata, self._dec(data["metadata"])),
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent,
                    }
                }
                if parent
                else None
            ),
            pending_writes=[
                (t, ch, self._dec(cell)) for (t, ch, cell, _) in (v for _, v in ordered)
            ],
        )

    # ------------------------------------------------------------ removal and copies

    async def _delete_thread(self, thread_id: str) -> None:
        sid = self.session_id(str(thread_id))
        await self.store.delete_session(sid)
        self._known.discard(sid)

    async def _copy_thread(self, source: str, target: str) -> None:
        src, dst = self.session_id(str(source)), self.session_id(str(target))
        try:
            await self.store.fork_session(src, new_session_id=dst)
        except SessionNotFoundError:
            return  # nothing to copy
        self._known.add(dst)

    async def _prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValidationError(
                f"unknown prune strategy {strategy!r}: expected 'keep_latest' or 'delete'",
                details={"field": "strategy"},
            )
        for thread_id in thread_ids:
            if strategy == "delete":
                await self._delete_thread(thread_id)
            else:
                await self._rewrite(self.session_id(str(thread_id)), _keep_latest)

    async def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        doomed = set(run_ids)
        if not doomed:
            return

        def keep(events: _Events) -> _Events:
            gone = {
                (e.data["ns"], e.data["id"])
                for e in events
                if e.type == CHECKPOINT and self._run_id(e) in doomed
            }
            return [e for e in events if _checkpoint_key(e) not in gone]

        for thread_id in await self._thread_ids():
            await self._rewrite(self.session_id(thread_id), keep)

    def _run_id(self, event: Event) -> Any:
        # from the metadata, not Event.run_id: a fork gives copied events derived run ids
        return cast(dict[str, Any], self._dec(event.data["metadata"])).get("run_id")

    async def _rewrite(self, sid: str, keep: Callable[[_Events], _Events]) -> None:
        """Hide the thread's history behind one rewind and re-append what ``keep`` keeps, as
        one batch conditional on the latest sequence read: a concurrent put makes it retry."""
        store = self.store
        retry = Retry(_REWRITE_RETRY)
        while True:
            latest = await store.get_latest_sequence(sid)
            visible = await store.get_visible_events(sid)
            ours = [e for e in visible if e.type in (CHECKPOINT, WRITES)]
            kept = keep(ours)
            if len(kept) == len(ours):
                return  # nothing to remove
            batch = [
                Event(
                    type=EventType.HISTORY_REWOUND,
                    session_id=sid,
                    data={"to_sequence": 0},
                    metadata={"langgraph": "rewrite"},
                )
            ] + [
                Event(
                    type=e.type,
                    session_id=sid,
                    run_id=e.run_id,
                    timestamp=e.timestamp,
                    data=e.data,
                    metadata={**e.metadata, "rewritten_from": e.id},
                )
                for e in kept
            ]
            try:
                await store.append_events(batch, expected_sequence=latest)
                return
            except SequenceConflictError:
                if not await retry.pause():
                    raise SequenceConflictError(
                        f"could not rewrite thread session {sid!r}: {retry.attempt} concurrent "
                        f"writes won in {retry.elapsed:.1f} s",
                        details={"session_id": sid, "attempts": retry.attempt},
                    ) from None


def _matches(ns: str, wanted: str | None, kind: str, data: dict[str, Any], writes: _Datas) -> bool:
    """One step of a newest-first walk for a checkpoint of ``ns`` (the ``wanted`` one, or
    the newest): True at it; the writes met before it are kept in ``writes``."""
    if data.get("ns") != ns:
        return False
    if kind == WRITES:
        writes.append(data)
        return False
    return kind == CHECKPOINT and (wanted is None or data["id"] == wanted)


def _keep_latest(events: list[Event]) -> list[Event]:
    """The newest checkpoint of each namespace and the writes attached to it."""
    latest: dict[str, str] = {}
    for e in events:
        if e.type == CHECKPOINT:
            latest[e.data["ns"]] = e.data["id"]  # events are oldest first: last one wins
    keep = set(latest.items())
    return [e for e in events if _checkpoint_key(e) in keep]


def _checkpoint_key(event: Event) -> tuple[str, str]:
    data = event.data
    return (data["ns"], data["id"] if event.type == CHECKPOINT else data["checkpoint_id"])


def _thread_id(conf: dict[str, Any] | Any) -> str:
    value = conf.get("thread_id")
    if value is None or value == "":
        raise ValidationError(
            "a LangGraph config needs configurable.thread_id", details={"field": "thread_id"}
        )
    return str(value)


def _is_plain_json(value: Any, depth: int = 0) -> bool:
    """True when JSON round-trips the value exactly (so serde and base64 can be skipped)."""
    if depth > 50:
        return False
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return True
    if kind is str:
        return _text_ok(value)
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_is_plain_json(v, depth + 1) for v in value)
    if kind is dict:
        return all(
            type(k) is str and _text_ok(k) and _is_plain_json(v, depth + 1)
            for k, v in value.items()
        )
    return False


def _text_ok(text: str) -> bool:
    """Not every backend stores NUL or lone surrogates in JSON text: serde takes those."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _running_loop() -> Any:
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
