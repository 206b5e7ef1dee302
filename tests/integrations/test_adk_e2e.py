"""A real ADK agent persisted through StoreSessionService, across OS processes.

A ``Runner`` drives an ``LlmAgent`` whose model is a scripted ``BaseLlm`` (no network): turn 1
is small talk, turn 2 a tool call, both in this process; a second OS process reopens the
session by id and holds turn 3, whose answer is computed from the history ADK rebuilt from our
store. Then ADK's own API server (``adk api_server``/``adk web``'s FastAPI app, built from the
``agent-session-store+<url>`` URI through ADK's service registry) reads the session back.
Also: two processes appending from copies of one session: exactly one wins.

Run as a script, this file is the second process (``python test_adk_e2e.py URL SID TEXT``).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from google.adk.agents.llm_agent import LlmAgent
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from agent_session_store.integrations.adk import StoreSessionService

APP, USER = "weather_app", "u1"
DURABLE = ["sqlite", "postgres", "redis"]


# ---------------------------------------------------------------- the agent


def _text(content: types.Content) -> str | None:
    for part in content.parts or []:
        if part.text:
            return part.text
    return None


class ScriptedModel(BaseLlm):
    """Answers from the request alone, so any process holding the history answers the same."""

    model: str = "scripted"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1]
        part = (last.parts or [types.Part()])[-1]
        if part.function_response is not None:
            result = part.function_response.response or {}
            reply = f"In {result['city']} it is {result['report']}."
        else:
            text = part.text or ""
            if text.startswith("weather in "):
                call = types.FunctionCall(
                    name="get_weather", args={"city": text.removeprefix("weather in ")}
                )
                yield LlmResponse(
                    content=types.Content(role="model", parts=[types.Part(function_call=call)])
                )
                return
            if text == "what was my first message?":
                said = [t for c in llm_request.contents if c.role == "user" and (t := _text(c))]
                reply = f"Your first message was {said[0]!r}; you sent {len(said)} messages."
            else:
                reply = f"Hello! You said {text!r}."
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=reply)]))


def get_weather(city: str, tool_context: ToolContext) -> dict[str, str]:
    """The weather report for a city."""
    tool_context.state["user:last_city"] = city
    tool_context.state["temp:scratch"] = "not stored"
    return {"city": city, "report": "sunny, 21 C"}


def build_agent() -> LlmAgent:
    return LlmAgent(
        name="weather_agent",
        model=ScriptedModel(),
        instruction="Answer about the weather.",
        tools=[get_weather],
        output_key="last_reply",
    )


async def run_turn(service: StoreSessionService, session_id: str, text: str) -> list[str]:
    runner = Runner(app_name=APP, agent=build_agent(), session_service=service)
    message = types.Content(role="user", parts=[types.Part(text=text)])
    replies = []
    async for event in runner.run_async(user_id=USER, session_id=session_id, new_message=message):
        if event.is_final_response() and event.content is not None:
            replies.append(_text(event.content) or "")
    return replies


async def _second_process(url: str, session_id: str, text: str) -> None:
    async with StoreSessionService(url) as service:
        replies = await run_turn(service, session_id, text)
    print(json.dumps({"replies": replies}))


# ---------------------------------------------------------------- fixtures


@pytest.fixture(params=DURABLE)
async def durable_url(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> AsyncIterator[str]:
    from test_adk_support import drop_session_data, session_url

    yield session_url(request.param, tmp_path, unique_name)
    await drop_session_data(request.param, unique_name)


# ---------------------------------------------------------------- the tests


@pytest.mark.timeout(180)
async def test_three_turns_across_two_processes_read_back_by_adk(
    durable_url: str, tmp_path: Path
) -> None:
    async with StoreSessionService(durable_url) as service:
        session = await service.create_session(app_name=APP, user_id=USER)
        assert await run_turn(service, session.id, "hi, I am Ada") == [
            "Hello! You said 'hi, I am Ada'."
        ]
        assert await run_turn(service, session.id, "weather in Paris") == [
            "In Paris it is sunny, 21 C."
        ]

    # turn 3 in another OS process, from nothing but the URL and the session id
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, __file__, durable_url, session.id, "what was my first message?"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    third = json.loads(child.stdout.strip().splitlines()[-1])
    assert third["replies"] == ["Your first message was 'hi, I am Ada'; you sent 3 messages."]

    # ADK's own server code, reached through its service registry, reads what we stored
    agents = tmp_path / "agents"
    (agents / APP).mkdir(parents=True)
    (agents / "services.py").write_text(
        "from agent_session_store.integrations.adk import register_adk_services\n"
        "register_adk_services()\n"
    )
    (agents / APP / "__init__.py").write_text("from . import agent\n")
    (agents / APP / "agent.py").write_text(
        "from test_adk_e2e import build_agent\nroot_agent = build_agent()\n"
    )
    stored = await asyncio.to_thread(_read_through_adk_server, agents, durable_url, session.id)
    events = [Event.model_validate(e) for e in stored["events"]]
    said = [(_text(e.content) or "") for e in events if e.author == "user" and e.content]
    assert said == ["hi, I am Ada", "weather in Paris", "what was my first message?"]
    assert any(e.get_function_calls() for e in events)
    assert any(e.get_function_responses() for e in events)
    assert stored["state"]["user:last_city"] == "Paris"
    assert stored["state"]["last_reply"].startswith("Your first message was")
    assert not any(k.startswith("temp:") for k in stored["state"])
    assert [s["id"] for s in stored["listed"]] == [session.id]


def _read_through_adk_server(agents: Path, url: str, session_id: str) -> dict[str, Any]:
    from fastapi.testclient import TestClient
    from google.adk.cli.fast_api import get_fast_api_app

    app = get_fast_api_app(
        agents_dir=str(agents), session_service_uri="agent-session-store+" + url, web=False
    )
    with TestClient(app) as client:
        got = client.get(f"/apps/{APP}/users/{USER}/sessions/{session_id}")
        assert got.status_code == 200, got.text
        listed = client.get(f"/apps/{APP}/users/{USER}/sessions")
        assert listed.status_code == 200, listed.text
    body: dict[str, Any] = got.json()
    body["listed"] = listed.json()
    return body


def _stale_writer(url: str, session_id: str, barrier: Barrier, rounds: int, queue: Any) -> None:
    async def main() -> None:
        outcomes = []
        async with StoreSessionService(url) as service:
            for i in range(rounds):
                copy = await service.get_session(app_name=APP, user_id=USER, session_id=session_id)
                assert copy is not None
                barrier.wait()  # both copies read at the same revision
                event = Event(
                    author="worker",
                    invocation_id=f"r{i}",
                    actions=EventActions(
                        state_delta={f"round{i}": multiprocessing.current_process().name}
                    ),
                )
                try:
                    await service.append_event(copy, event)
                    outcomes.append("won")
                except StaleSessionError:
                    outcomes.append("stale")
                barrier.wait()  # next round reads after both wrote
        queue.put(outcomes)

    asyncio.run(main())


@pytest.mark.timeout(180)
async def test_two_processes_appending_from_one_revision_exactly_one_wins(
    durable_url: str,
) -> None:
    async with StoreSessionService(durable_url) as service:
        session = await service.create_session(app_name=APP, user_id=USER)
    rounds = 5
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2, timeout=60)
    queue = ctx.Queue()
    workers = [
        ctx.Process(
            target=_stale_writer,
            args=(durable_url, session.id, barrier, rounds, queue),
            name=f"w{n}",
        )
        for n in range(2)
    ]
    for w in workers:
        w.start()
    results = [await asyncio.to_thread(queue.get, True, 120) for _ in workers]
    for w in workers:
        await asyncio.to_thread(w.join, 30)
        assert w.exitcode == 0
    for i in range(rounds):
        assert sorted(r[i] for r in results) == ["stale", "won"], results
    async with StoreSessionService(durable_url) as service:
        final = await service.get_session(app_name=APP, user_id=USER, session_id=session.id)
    assert final is not None
    assert [e.invocation_id for e in final.events] == [f"r{i}" for i in range(rounds)]
    assert sorted(k for k in final.state) == [f"round{i}" for i in range(rounds)]


if __name__ == "__main__":
    asyncio.run(_second_process(sys.argv[1], sys.argv[2], sys.argv[3]))
