"""Child-process bodies for the OpenAI Agents and LangGraph adapter tests (spawned, so each
opens its own store from the URL like a separate worker of an application)."""

from __future__ import annotations

import operator
from multiprocessing.synchronize import Barrier
from typing import Annotated, Any, TypedDict

from agent_session_store.testing.workers import _wait
from agent_session_store.urls import open_session_store


async def pop_until_empty(barrier: Barrier, url: str, session_id: str) -> list[Any]:
    """Pop items until the session is empty; return what this process popped."""
    from agent_session_store.integrations.openai_agents import OpenAIAgentsSession

    async with open_session_store(url) as store:
        session = OpenAIAgentsSession(session_id, store)
        await session.get_items(1)  # connections warm before the race starts
        _wait(barrier)
        popped: list[Any] = []
        while (item := await session.pop_item()) is not None:
            popped.append(item)
        return popped


class TripState(TypedDict, total=False):
    city: str
    answer: str
    booked: str
    steps: Annotated[list[str], operator.add]


def _plan(state: TripState) -> TripState:
    return {"city": "Paris", "steps": ["plan"]}


def _approve(state: TripState) -> TripState:
    from langgraph.types import interrupt

    answer = interrupt(f"approve booking for {state['city']}?")
    return {"answer": answer, "steps": ["approve"]}


def _book(state: TripState) -> TripState:
    return {"booked": f"{state['city']}: {state['answer']}", "steps": ["book"]}


def _graph(saver: Any) -> Any:
    """plan -> approve (interrupts for a human) -> book."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(TripState)
    builder.add_node("plan", _plan)
    builder.add_node("approve", _approve)
    builder.add_node("book", _book)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "approve")
    builder.add_edge("approve", "book")
    builder.add_edge("book", END)
    return builder.compile(checkpointer=saver)


async def graph_until_interrupt(barrier: Barrier, url: str, thread: str) -> dict[str, Any]:
    """A sync graph.invoke (LangGraph's own loop) that stops at the human-approval interrupt."""
    import os

    from agent_session_store.integrations.langgraph import StoreCheckpointSaver

    _wait(barrier)
    with StoreCheckpointSaver.from_url(url) as saver:
        graph = _graph(saver)
        config = {"configurable": {"thread_id": thread}}
        out = graph.invoke({}, config)
        state = graph.get_state(config)
        assert state.next == ("approve",)
        return {
            "interrupted": out["__interrupt__"][0].value,
            "booked": out.get("booked"),
            "pid": os.getpid(),
        }


async def graph_resume(barrier: Barrier, url: str, thread: str, answer: str) -> dict[str, Any]:
    """Another process: the async API this time, resuming from the stored checkpoint."""
    import os

    from langgraph.types import Command

    from agent_session_store.integrations.langgraph import StoreCheckpointSaver

    _wait(barrier)
    async with open_session_store(url) as store:
        saver = StoreCheckpointSaver(store)
        graph = _graph(saver)
        config = {"configurable": {"thread_id": thread}}
        before = await graph.aget_state(config)
        assert before.next == ("approve",)
        out = await graph.ainvoke(Command(resume=answer), config)
        return {"booked": out["booked"], "steps": out["steps"], "pid": os.getpid()}


async def put_chain(barrier: Barrier, url: str, thread: str, writer: str, count: int) -> list[str]:
    """Put ``count`` checkpoints (each with one pending write) on one thread, chained to this
    writer's previous one, racing another process doing the same."""
    from langgraph.checkpoint.conformance.test_utils import generate_checkpoint

    from agent_session_store.integrations.langgraph import StoreCheckpointSaver

    async with open_session_store(url) as store:
        saver = StoreCheckpointSaver(store)
        await saver.aget_tuple({"configurable": {"thread_id": thread}})
        _wait(barrier)
        ids: list[str] = []
        parent: str | None = None
        for step in range(count):
            conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
            if parent is not None:
                conf["checkpoint_id"] = parent
            cp = generate_checkpoint(
                channel_values={"w": writer, "step": step},
                channel_versions={"w": 1, "step": step + 1},
            )
            stored = await saver.aput({"configurable": conf}, cp, {"step": step}, {})
            await saver.aput_writes(stored, [("note", f"{writer}{step}")], f"task-{writer}")
            parent = stored["configurable"]["checkpoint_id"]
            ids.append(parent)
        return ids
