"""Our LangGraph checkpointer on every backend: LangGraph's own conformance suite (base and
extended capabilities), a real StateGraph interrupted in one process and resumed in another,
and two processes writing checkpoints to one thread."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import (
    BASE_CAPABILITIES,
    EXTENDED_CAPABILITIES,
)
from olg_backends import BACKENDS, backend

from agent_session_store import open_session_store
from agent_session_store.errors import ValidationError
from agent_session_store.integrations.langgraph import CHECKPOINT, StoreCheckpointSaver
from agent_session_store.ports import SessionStore
from agent_session_store.testing.workers import run_processes

DURABLE = [k for k in BACKENDS if k != "memory"]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend(request.param, tmp_path) as u:
        yield u


@pytest.fixture
async def store(url: str) -> AsyncIterator[SessionStore]:
    async with open_session_store(url) as s:
        yield s


async def test_conformance_suite_passes_every_capability(store: SessionStore) -> None:
    @checkpointer_test(name="StoreCheckpointSaver")
    async def saver() -> AsyncGenerator[StoreCheckpointSaver, None]:
        yield StoreCheckpointSaver(store)

    report = await validate(saver)
    report.print_report()
    for cap in BASE_CAPABILITIES | EXTENDED_CAPABILITIES:
        result = report.results[cap.value]
        assert result.detected, cap
        assert result.passed, (cap, result.failures)
    assert report.passed_all_base()
    total = sum(r.tests_passed for r in report.results.values())
    assert total == 81, total  # every test of the pinned suite ran and passed


def _config(thread: str, checkpoint_id: str | None = None) -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def _checkpoint(values: dict[str, Any]) -> Any:
    from langgraph.checkpoint.conformance.test_utils import generate_checkpoint

    return generate_checkpoint(channel_values=values, channel_versions={k: 1 for k in values})


async def test_plain_json_values_are_stored_as_json_others_through_serde(
    store: SessionStore,
) -> None:
    saver = StoreCheckpointSaver(store)
    values = {"messages": ["hi", {"role": "user"}], "count": 3, "blob": b"\x00\x01", "t": {1, 2}}
    stored = await saver.aput(_config("t1"), _checkpoint(values), {"source": "input"}, {})
    [event] = await store.get_events("langgraph:t1", type=CHECKPOINT)
    cells = event.data["values"]
    assert cells["messages"] == {"json": ["hi", {"role": "user"}]}
    assert cells["count"] == {"json": 3}
    assert "b64" in cells["blob"] and "b64" in cells["t"]  # bytes and sets need serde
    assert base64.b64decode(cells["blob"]["b64"])
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert tup.checkpoint["channel_values"] == values
    record = await store.get_session("langgraph:t1")
    assert record.agent_id == "langgraph"


async def test_threads_are_listed_and_bad_input_is_typed(store: SessionStore) -> None:
    saver = StoreCheckpointSaver(store)
    for thread in ("a", "b"):
        await saver.aput(_config(thread), _checkpoint({"x": 1}), {"step": 0}, {})
    every = [t async for t in saver.alist(None)]
    assert {t.config["configurable"]["thread_id"] for t in every} == {"a", "b"}
    with pytest.raises(ValidationError):
        await saver.aput({"configurable": {}}, _checkpoint({}), {}, {})
    with pytest.raises(ValidationError):
        await saver.aprune(["a"], strategy="bogus")


async def test_prune_keeps_the_pruned_history_for_audit(store: SessionStore) -> None:
    saver = StoreCheckpointSaver(store)
    parent = None
    for step in range(3):
        cfg = _config("p", parent)
        parent = (await saver.aput(cfg, _checkpoint({"s": step}), {"step": step}, {}))[
            "configurable"
        ]["checkpoint_id"]
    await saver.aprune(["p"])
    assert len([t async for t in saver.alist(_config("p"))]) == 1
    raw = await store.get_events("langgraph:p", type=CHECKPOINT)
    assert len(raw) == 4  # three originals, still in the log, and the kept copy


async def test_get_tuple_reads_the_newest_payloads_and_walks_on_only_when_needed(
    store: SessionStore,
) -> None:
    """The latest checkpoint on top costs one narrow read (``get_newest_payloads``: no Event
    built, which was most of a get_tuple); behind more writes than that read holds, or under
    a rewind (a prune), the walk finds it with every write that names it."""
    saver = StoreCheckpointSaver(store)
    first = await saver.aput(_config("w"), _checkpoint({"x": 0}), {"step": 0}, {})
    stored = await saver.aput(
        _config("w", first["configurable"]["checkpoint_id"]),
        _checkpoint({"x": 1}),
        {"step": 1},
        {},
    )
    wanted = stored["configurable"]["checkpoint_id"]
    calls: list[str] = []
    for name in ("get_events", "get_visible_events", "get_newest_payloads"):
        method = getattr(store, name)

        def counted(*args: Any, _m: Any = method, _n: str = name, **kwargs: Any) -> Any:
            calls.append(_n)
            return _m(*args, **kwargs)

        setattr(store, name, counted)
    tup = await saver.aget_tuple(_config("w"))
    assert tup is not None and tup.checkpoint["id"] == wanted
    assert calls == ["get_newest_payloads"]
    await saver.aput_writes(stored, [("ch", -1)], "early")
    await saver.aprune(["w"])  # a rewind among the newest events, then the kept copies
    for task in range(13):
        tup = await saver.aget_tuple(_config("w"))
        assert tup is not None and tup.checkpoint["id"] == wanted
        assert tup.checkpoint["channel_values"] == {"x": 1}
        assert tup.pending_writes is not None
        assert sorted(w[2] for w in tup.pending_writes) == list(range(-1, task))
        # more writes events each time, until the checkpoint is past the narrow read
        await saver.aput_writes(stored, [("ch", task)], f"task{task}")
    older = await saver.aget_tuple(_config("w", first["configurable"]["checkpoint_id"]))
    assert older is None  # pruned away


def test_sync_api_on_a_store_loop(url: str) -> None:
    with StoreCheckpointSaver.from_url(url) as saver:
        stored = saver.put(_config("s"), _checkpoint({"v": "x"}), {"step": 1}, {})
        saver.put_writes(stored, [("v", "y")], "task-1")
        tup = saver.get_tuple(_config("s"))
        assert tup is not None
        assert tup.checkpoint["channel_values"] == {"v": "x"}
        assert tup.pending_writes == [("task-1", "v", "y")]
        assert [t.metadata["step"] for t in saver.list(_config("s"))] == [1]
        saver.delete_thread("s")
        assert saver.get_tuple(_config("s")) is None


@pytest.mark.parametrize("kind", DURABLE)
def test_graph_interrupted_in_one_process_resumes_in_another(kind: str, tmp_path: Path) -> None:
    import olg_workers

    with backend(kind, tmp_path) as u:
        [first] = run_processes(olg_workers.graph_until_interrupt, [(u, "trip")])
        assert first["interrupted"] == "approve booking for Paris?"
        assert first["booked"] is None
        [second] = run_processes(olg_workers.graph_resume, [(u, "trip", "yes")])
        assert second["pid"] != first["pid"]
        assert second["booked"] == "Paris: yes"
        assert second["steps"] == ["plan", "approve", "book"]


@pytest.mark.parametrize("kind", DURABLE)
def test_two_processes_writing_one_thread(kind: str, tmp_path: Path) -> None:
    """The documented outcome: both writers' checkpoints are kept, whole; each one's chain of
    parents is intact; the thread's latest is the one appended last."""
    import olg_workers

    count = 25
    with backend(kind, tmp_path) as u:
        a, b = run_processes(olg_workers.put_chain, [(u, "w", "A", count), (u, "w", "B", count)])

        async def check() -> None:
            async with open_session_store(u) as store:
                saver = StoreCheckpointSaver(store)
                listed = [t async for t in saver.alist(_config("w"))]
                assert len(listed) == 2 * count
                by_id = {t.checkpoint["id"]: t for t in listed}
                for writer, ids in (("A", a), ("B", b)):
                    for step, cid in enumerate(ids):
                        tup = by_id[cid]
                        assert tup.checkpoint["channel_values"] == {"w": writer, "step": step}
                        parent = tup.parent_config
                        expected_parent = ids[step - 1] if step else None
                        got = parent["configurable"]["checkpoint_id"] if parent else None
                        assert got == expected_parent
                        assert [w[2] for w in tup.pending_writes or []] == [f"{writer}{step}"]
                events = await store.get_events("langgraph:w", type=CHECKPOINT)
                seqs = [e.sequence_number for e in await store.get_events("langgraph:w")]
                assert seqs == list(range(1, 4 * count + 1))  # gapless, every write kept
                latest = await saver.aget_tuple(_config("w"))
                assert latest is not None
                assert latest.checkpoint["id"] == events[-1].data["id"]

        asyncio.run(check())


async def test_prune_racing_puts_never_hides_a_newer_checkpoint(url: str) -> None:
    """A prune reads the thread, then appends its rewrite conditionally: a put landing in
    between makes it re-read, so the newest checkpoint always survives (without the
    condition the rewrite would hide it behind its rewind)."""
    if url.startswith("memory"):
        pytest.skip("the memory store runs each call without yielding: nothing interleaves")
    async with open_session_store(url) as put_store, open_session_store(url) as prune_store:
        putter, pruner = StoreCheckpointSaver(put_store), StoreCheckpointSaver(prune_store)
        done = asyncio.Event()
        last: list[str] = []

        async def put_many() -> None:
            parent = None
            for step in range(30):
                stored = await putter.aput(_config("r", parent), _checkpoint({"s": step}), {}, {})
                parent = stored["configurable"]["checkpoint_id"]
                last.append(parent)
            done.set()

        async def prune_until_done() -> int:
            rounds = 0
            while not done.is_set():
                await pruner.aprune(["r"])
                rounds += 1
            return rounds

        _, rounds = await asyncio.gather(put_many(), prune_until_done())
        assert rounds > 0
        latest = await pruner.aget_tuple(_config("r"))
        assert latest is not None
        assert latest.checkpoint["id"] == last[-1]
