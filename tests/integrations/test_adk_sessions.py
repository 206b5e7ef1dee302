"""StoreSessionService against the cases of ADK's own session-service tests, on every backend.

The cases mirror google/adk-python tests/unittests/sessions/test_session_service.py (written
here, not copied); the ones that only probe DatabaseSessionService's SQLAlchemy internals
(rollback spies, table preparation, row locks) have no counterpart. The last group covers what
ADK's suite does not: separation of keys, concurrent app-state writers, the stored layout.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.input_validation_error import InputValidationError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.sessions.session import Session
from google.genai import types
from test_adk_support import session_store, session_store_url  # noqa: F401  (fixtures)

from agent_session_store.integrations.adk import StoreSessionService

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def service(session_store: Any) -> StoreSessionService:  # noqa: F811
    return StoreSessionService(session_store)


def _now() -> float:
    return datetime.now().astimezone(UTC).timestamp()


async def test_get_empty_session(service: StoreSessionService) -> None:
    assert not await service.get_session(app_name="my_app", user_id="test_user", session_id="123")


async def test_create_get_session(service: StoreSessionService) -> None:
    state = {"key": "value"}
    session = await service.create_session(app_name="my_app", user_id="test_user", state=state)
    assert session.app_name == "my_app"
    assert session.user_id == "test_user"
    assert session.id
    assert session.state == state
    assert session.last_update_time <= _now()

    got = await service.get_session(app_name="my_app", user_id="test_user", session_id=session.id)
    assert got == session
    assert got.last_update_time <= _now()

    await service.delete_session(app_name="my_app", user_id="test_user", session_id=session.id)
    assert (
        await service.get_session(app_name="my_app", user_id="test_user", session_id=session.id)
        is None
    )


async def test_create_and_list_sessions(service: StoreSessionService) -> None:
    ids = [f"session{i}" for i in range(5)]
    for sid in ids:
        await service.create_session(
            app_name="my_app", user_id="test_user", session_id=sid, state={"key": "value" + sid}
        )
    sessions = (await service.list_sessions(app_name="my_app", user_id="test_user")).sessions
    assert len(sessions) == len(ids)
    assert {s.id for s in sessions} == set(ids)
    for session in sessions:
        assert session.state == {"key": "value" + session.id}
        assert session.events == []


async def test_list_sessions_all_users(service: StoreSessionService) -> None:
    await service.create_session(
        app_name="my_app", user_id="user1", session_id="session1a", state={"key": "value1a"}
    )
    await service.create_session(
        app_name="my_app", user_id="user1", session_id="session1b", state={"key": "value1b"}
    )
    await service.create_session(
        app_name="my_app", user_id="user2", session_id="session2a", state={"key": "value2a"}
    )
    listed = await service.list_sessions(app_name="my_app", user_id="user1")
    one = {s.id: s for s in listed.sessions}
    assert set(one) == {"session1a", "session1b"}
    assert one["session1a"].state == {"key": "value1a"}
    assert one["session1b"].state == {"key": "value1b"}
    two = (await service.list_sessions(app_name="my_app", user_id="user2")).sessions
    assert [s.id for s in two] == ["session2a"]
    assert two[0].state == {"key": "value2a"}
    everyone = {s.id: s for s in (await service.list_sessions(app_name="my_app")).sessions}
    assert set(everyone) == {"session1a", "session1b", "session2a"}
    assert everyone["session2a"].user_id == "user2"
    assert everyone["session1b"].state == {"key": "value1b"}


async def test_list_sessions_order_and_own_copies(service: StoreSessionService) -> None:
    """ADK's order: oldest update first, then user, then id (ties made by events with one
    timestamp); each listing's states are the caller's own, on every backend."""
    t = _now() - 100
    plan = [("u2", "b", t), ("u1", "c", t), ("u2", "a", t), ("u1", "z", t - 5), ("u3", "m", t)]
    for user, sid, when in plan:
        session = await service.create_session(
            app_name="ord", user_id=user, session_id=sid, state={"n": sid}
        )
        event = Event(invocation_id="i", author="user", timestamp=when)
        await service.append_event(session=session, event=event)
    want = sorted(((when, user, sid) for user, sid, when in plan))
    listed = (await service.list_sessions(app_name="ord")).sessions
    assert [(s.last_update_time, s.user_id, s.id) for s in listed] == want
    mine = (await service.list_sessions(app_name="ord", user_id="u2")).sessions
    assert [s.id for s in mine] == ["a", "b"]
    mine[0].state["n"] = "changed"
    again = (await service.list_sessions(app_name="ord", user_id="u2")).sessions
    assert again[0].state == {"n": "a"}
    got = await service.get_session(app_name="ord", user_id="u2", session_id="a")
    assert got is not None and got.state == {"n": "a"}


async def test_app_state_is_shared_by_all_users_of_app(service: StoreSessionService) -> None:
    s1 = await service.create_session(
        app_name="my_app", user_id="u1", session_id="s1", state={"app:k1": "v1"}
    )
    event = Event(
        invocation_id="inv1", author="user", actions=EventActions(state_delta={"app:k2": "v2"})
    )
    await service.append_event(session=s1, event=event)
    s2 = await service.create_session(app_name="my_app", user_id="u2", session_id="s2")
    assert s2.state == {"app:k1": "v1", "app:k2": "v2"}
    again = await service.get_session(app_name="my_app", user_id="u1", session_id="s1")
    assert again is not None
    assert again.state.get("app:k1") == "v1"
    assert again.state.get("app:k2") == "v2"


async def test_user_state_is_shared_only_by_user_sessions(service: StoreSessionService) -> None:
    s1 = await service.create_session(
        app_name="my_app", user_id="u1", session_id="s1", state={"user:k1": "v1"}
    )
    event = Event(
        invocation_id="inv1", author="user", actions=EventActions(state_delta={"user:k2": "v2"})
    )
    await service.append_event(session=s1, event=event)
    s1b = await service.create_session(app_name="my_app", user_id="u1", session_id="s1b")
    assert s1b.state == {"user:k1": "v1", "user:k2": "v2"}
    s2 = await service.create_session(app_name="my_app", user_id="u2", session_id="s2")
    assert s2.state == {}


async def test_session_state_is_not_shared(service: StoreSessionService) -> None:
    s1 = await service.create_session(
        app_name="my_app", user_id="u1", session_id="s1", state={"sk1": "v1"}
    )
    event = Event(
        invocation_id="inv1", author="user", actions=EventActions(state_delta={"sk2": "v2"})
    )
    await service.append_event(session=s1, event=event)
    got = await service.get_session(app_name="my_app", user_id="u1", session_id="s1")
    assert got is not None
    assert got.state.get("sk1") == "v1"
    assert got.state.get("sk2") == "v2"
    s1b = await service.create_session(app_name="my_app", user_id="u1", session_id="s1b")
    assert s1b.state == {}


async def test_temp_state_is_not_persisted_in_state_or_events(
    service: StoreSessionService,
) -> None:
    session = await service.create_session(app_name="my_app", user_id="u1", session_id="s1")
    event = Event(
        invocation_id="inv1",
        author="user",
        actions=EventActions(state_delta={"temp:k1": "v1", "sk": "v2"}),
    )
    await service.append_event(session=session, event=event)
    assert session.state.get("temp:k1") == "v1"
    assert session.state.get("sk") == "v2"
    assert "temp:k1" not in event.actions.state_delta
    assert event.actions.state_delta.get("sk") == "v2"
    # ...and nothing of it reached storage, neither state nor the stored event.
    got = await service.get_session(app_name="my_app", user_id="u1", session_id="s1")
    assert got is not None
    assert "temp:k1" not in got.state
    assert "temp:k1" not in got.events[0].actions.state_delta


async def test_temp_state_visible_across_sequential_events(service: StoreSessionService) -> None:
    session = await service.create_session(app_name="my_app", user_id="u1", session_id="s_seq")
    event1 = Event(
        invocation_id="inv1",
        author="agent1",
        actions=EventActions(state_delta={"temp:output": "result_from_a1"}),
    )
    await service.append_event(session=session, event=event1)
    assert session.state.get("temp:output") == "result_from_a1"
    assert "temp:output" not in event1.actions.state_delta


async def test_get_session_respects_user_id(service: StoreSessionService) -> None:
    s1 = await service.create_session(app_name="my_app", user_id="u1", session_id="s1")
    await service.append_event(s1, Event(invocation_id="inv1", author="user"))
    await service.create_session(app_name="my_app", user_id="u2", session_id="s1")
    got = await service.get_session(app_name="my_app", user_id="u2", session_id="s1")
    assert got is not None
    assert got.user_id == "u2"
    assert len(got.events) == 0


async def test_create_session_with_existing_id_raises_error(service: StoreSessionService) -> None:
    await service.create_session(app_name="my_app", user_id="test_user", session_id="existing")
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name="my_app", user_id="test_user", session_id="existing")


async def test_concurrent_creates_of_one_id_exactly_one_wins(
    service: StoreSessionService,
) -> None:
    results = await asyncio.gather(
        *(
            service.create_session(app_name="my_app", user_id="u", session_id="same")
            for _ in range(4)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Session) for r in results) == 1
    assert sum(isinstance(r, AlreadyExistsError) for r in results) == 3


async def test_append_event_bytes(service: StoreSessionService) -> None:
    session = await service.create_session(app_name="my_app", user_id="user")
    content = types.Content(
        role="user",
        parts=[types.Part.from_bytes(data=b"test_image_data", mime_type="image/png")],
    )
    grounding = types.GroundingMetadata(
        search_entry_point=types.SearchEntryPoint(sdk_blob=b"test_sdk_blob")
    )
    event = Event(
        invocation_id="invocation", author="user", content=content, grounding_metadata=grounding
    )
    await service.append_event(session=session, event=event)
    assert session.events[0].content == content
    got = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
    assert got is not None
    assert len(got.events) == 1
    assert got.events[0].content == content
    assert got.events[0].grounding_metadata == grounding


async def test_append_event_complete(service: StoreSessionService) -> None:
    session = await service.create_session(app_name="my_app", user_id="user")
    event = Event(
        invocation_id="invocation",
        author="user",
        content=types.Content(role="user", parts=[types.Part(text="test_text")]),
        turn_complete=True,
        partial=False,
        actions=EventActions(artifact_delta={"file": 0}, transfer_to_agent="agent", escalate=True),
        long_running_tool_ids={"tool1"},
        error_code="error_code",
        error_message="error_message",
        interrupted=True,
        grounding_metadata=types.GroundingMetadata(web_search_queries=["query1"]),
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=1, candidates_token_count=1, total_token_count=2
        ),
        citation_metadata=types.CitationMetadata(),
        custom_metadata={"custom_key": "custom_value"},
        timestamp=1700000000.123,
        input_transcription=types.Transcription(text="input transcription", finished=True),
        output_transcription=types.Transcription(text="output transcription", finished=True),
    )
    await service.append_event(session=session, event=event)
    got = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
    assert got == session


async def test_session_last_update_time_updates_on_event(service: StoreSessionService) -> None:
    session = await service.create_session(app_name="my_app", user_id="user")
    original = session.last_update_time
    event = Event(invocation_id="invocation", author="user", timestamp=original + 10)
    await service.append_event(session=session, event=event)
    assert session.last_update_time == pytest.approx(original + 10, abs=1e-6)
    got = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
    assert got is not None
    assert got.last_update_time == pytest.approx(original + 10, abs=1e-6)
    assert got.last_update_time > original


async def test_append_event_to_stale_session(service: StoreSessionService) -> None:
    now = _now()
    original = await service.create_session(app_name="my_app", user_id="user")
    e1 = Event(
        invocation_id="inv1",
        author="user",
        timestamp=now + 1,
        actions=EventActions(state_delta={"sk1": "v1"}),
    )
    await service.append_event(original, e1)
    updated = await service.get_session(app_name="my_app", user_id="user", session_id=original.id)
    assert updated is not None
    e2 = Event(
        invocation_id="inv2",
        author="user",
        timestamp=now + 2,
        actions=EventActions(state_delta={"sk2": "v2"}),
    )
    await service.append_event(updated, e2)
    assert original.last_update_time < updated.last_update_time
    assert len(original.events) == 1
    assert "sk2" not in original.state

    e3 = Event(
        invocation_id="inv3",
        author="user",
        timestamp=now + 3,
        actions=EventActions(state_delta={"sk3": "v3"}),
    )
    with pytest.raises(StaleSessionError, match="modified in storage"):
        await service.append_event(original, e3)

    final = await service.get_session(app_name="my_app", user_id="user", session_id=original.id)
    assert final is not None
    assert [e.invocation_id for e in final.events] == ["inv1", "inv2"]
    assert final.state.get("sk1") == "v1"
    assert final.state.get("sk2") == "v2"
    assert final.state.get("sk3") is None


async def test_append_event_concurrent_stale_sessions_reject_stale_writer(
    service: StoreSessionService,
) -> None:
    session = await service.create_session(app_name="my_app", user_id="user")
    rounds = 8
    for i in range(rounds):
        latest = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
        assert latest is not None
        copy_1 = latest.model_copy(deep=True)
        copy_2 = latest.model_copy(deep=True)
        base = latest.last_update_time + 10.0
        e1 = Event(
            invocation_id=f"inv{i}-1",
            author="user",
            timestamp=base + 1.0,
            actions=EventActions(state_delta={f"sk{i}-1": f"v{i}-1"}),
        )
        e2 = Event(
            invocation_id=f"inv{i}-2",
            author="user",
            timestamp=base + 2.0,
            actions=EventActions(state_delta={f"sk{i}-2": f"v{i}-2"}),
        )
        results = await asyncio.gather(
            service.append_event(copy_1, e1),
            service.append_event(copy_2, e2),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], StaleSessionError)
        assert "modified in storage" in str(errors[0])
    final = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
    assert final is not None
    for i in range(rounds):
        values = {final.state.get(f"sk{i}-1"), final.state.get(f"sk{i}-2")}
        assert values & {f"v{i}-1", f"v{i}-2"}
        assert None in values
    assert len(final.events) == rounds


async def test_append_event_allows_timestamp_drift_for_current_session(
    service: StoreSessionService,
) -> None:
    session = await service.create_session(app_name="my_app", user_id="user", session_id="s1")
    e1 = Event(invocation_id="inv1", author="user", timestamp=session.last_update_time + 10)
    await service.append_event(session, e1)
    session.last_update_time -= 0.0001  # a float round trip, not a newer stored revision
    await service.append_event(
        session, Event(invocation_id="inv2", author="user", timestamp=e1.timestamp + 10)
    )
    got = await service.get_session(app_name="my_app", user_id="user", session_id="s1")
    assert got is not None
    assert [e.invocation_id for e in got.events] == ["inv1", "inv2"]


async def test_append_event_allows_markerless_current_session(
    service: StoreSessionService,
) -> None:
    session = await service.create_session(app_name="my_app", user_id="user", session_id="s1")
    e1 = Event(invocation_id="inv1", author="user", timestamp=session.last_update_time + 10)
    await service.append_event(session, e1)
    session._storage_update_marker = None
    session.last_update_time -= 0.0001
    await service.append_event(
        session, Event(invocation_id="inv2", author="user", timestamp=e1.timestamp + 10)
    )
    got = await service.get_session(app_name="my_app", user_id="user", session_id="s1")
    assert got is not None
    assert [e.invocation_id for e in got.events] == ["inv1", "inv2"]


async def test_copy_of_a_deleted_and_recreated_session_is_stale(
    service: StoreSessionService,
) -> None:
    """Numbers start over in a session created again under a deleted one's id, so a copy
    of the old one can hold the new one's number: it is stale all the same (as ADK's own
    update-time marker makes it), and the new session keeps its state."""
    old = await service.create_session(app_name="my_app", user_id="u", session_id="again")
    await service.delete_session(app_name="my_app", user_id="u", session_id="again")
    new = await service.create_session(
        app_name="my_app", user_id="u", session_id="again", state={"k": "new"}
    )
    assert old._storage_update_marker != new._storage_update_marker
    with pytest.raises(StaleSessionError):
        await service.append_event(
            old,
            Event(
                invocation_id="stale",
                author="user",
                timestamp=_now(),
                actions=EventActions(state_delta={"k": "old"}),
            ),
        )
    got = await service.get_session(app_name="my_app", user_id="u", session_id="again")
    assert got is not None and got.events == [] and got.state == {"k": "new"}
    await service.append_event(got, Event(invocation_id="fresh", author="user", timestamp=_now()))


async def test_markerless_stale_session_is_rejected(service: StoreSessionService) -> None:
    session = await service.create_session(app_name="my_app", user_id="user", session_id="s1")
    stale = session.model_copy(deep=True)
    await service.append_event(
        session, Event(invocation_id="inv1", author="user", timestamp=session.last_update_time + 5)
    )
    stale._storage_update_marker = None
    with pytest.raises(StaleSessionError):
        await service.append_event(
            stale, Event(invocation_id="inv2", author="user", timestamp=stale.last_update_time + 1)
        )


async def test_get_session_with_config(service: StoreSessionService) -> None:
    session = await service.create_session(app_name="my_app", user_id="user")
    for i in range(1, 6):
        await service.append_event(session, Event(author="user", timestamp=i))

    async def get(config: GetSessionConfig | None = None) -> list[Event]:
        got = await service.get_session(
            app_name="my_app", user_id="user", session_id=session.id, config=config
        )
        assert got is not None
        return got.events

    assert len(await get()) == 5
    assert not await get(GetSessionConfig(num_recent_events=0))
    recent = await get(GetSessionConfig(num_recent_events=3))
    assert [e.timestamp for e in recent] == [3, 4, 5]
    after = await get(GetSessionConfig(after_timestamp=4.0))
    assert [e.timestamp for e in after] == [4, 5]
    assert not await get(GetSessionConfig(after_timestamp=50))
    both = await get(GetSessionConfig(after_timestamp=4.0, num_recent_events=3))
    assert [e.timestamp for e in both] == [4, 5]


async def test_partial_events_are_not_persisted(service: StoreSessionService) -> None:
    session = await service.create_session(app_name="my_app", user_id="user")
    await service.append_event(session, Event(author="user", partial=True))
    assert len(session.events) == 0
    got = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
    assert got is not None
    assert len(got.events) == 0


async def test_append_event_to_unknown_session(service: StoreSessionService) -> None:
    ghost = Session(id="nope", app_name="my_app", user_id="u")
    with pytest.raises(SessionNotFoundError):
        await service.append_event(ghost, Event(author="user"))


async def test_get_user_state_returns_empty_dict_when_no_state_exists(
    service: StoreSessionService,
) -> None:
    assert not await service.get_user_state(app_name="my_app", user_id="u1")


async def test_get_user_state_returns_state_written_via_append_event(
    service: StoreSessionService,
) -> None:
    session = await service.create_session(app_name="my_app", user_id="u1")
    await service.append_event(
        session,
        Event(
            author="system",
            actions=EventActions(state_delta={"user:profile": {"name": "Alice"}, "session_key": 1}),
        ),
    )
    state = await service.get_user_state(app_name="my_app", user_id="u1")
    assert state == {"profile": {"name": "Alice"}}


async def test_get_user_state_is_isolated_by_user_and_app(service: StoreSessionService) -> None:
    session = await service.create_session(app_name="my_app", user_id="u1")
    await service.append_event(
        session, Event(author="system", actions=EventActions(state_delta={"user:secret": "x"}))
    )
    assert not await service.get_user_state(app_name="my_app", user_id="u2")
    assert not await service.get_user_state(app_name="other_app", user_id="u1")


async def test_get_user_state_reflects_latest_write(service: StoreSessionService) -> None:
    session = await service.create_session(app_name="my_app", user_id="u1")
    for n in (1, 2):
        await service.append_event(
            session, Event(author="system", actions=EventActions(state_delta={"user:counter": n}))
        )
    assert (await service.get_user_state(app_name="my_app", user_id="u1"))["counter"] == 2


# ---------------------------------------------------------------- beyond ADK's suite


async def test_keys_with_slashes_do_not_collide(service: StoreSessionService) -> None:
    a = await service.create_session(app_name="a/b", user_id="c", session_id="d", state={"k": 1})
    b = await service.create_session(app_name="a", user_id="b/c", session_id="d", state={"k": 2})
    got_a = await service.get_session(app_name="a/b", user_id="c", session_id="d")
    got_b = await service.get_session(app_name="a", user_id="b/c", session_id="d")
    assert got_a == a
    assert got_b == b
    assert [s.id for s in (await service.list_sessions(app_name="a")).sessions] == ["d"]


async def test_concurrent_app_state_writers_lose_no_key(service: StoreSessionService) -> None:
    sessions = [
        await service.create_session(app_name="my_app", user_id=f"u{i}", session_id="s")
        for i in range(6)
    ]
    await asyncio.gather(
        *(
            service.append_event(
                s, Event(author="x", actions=EventActions(state_delta={f"app:k{i}": i}))
            )
            for i, s in enumerate(sessions)
        )
    )
    fresh = await service.create_session(app_name="my_app", user_id="late")
    assert fresh.state == {f"app:k{i}": i for i in range(6)}


async def test_stored_layout_is_our_log(service: StoreSessionService, session_store: Any) -> None:  # noqa: F811
    """Each ADK event is one ``adk.event`` in our log, visible to our own queries."""
    session = await service.create_session(app_name="my_app", user_id="u", session_id="s")
    event = Event(
        invocation_id="inv",
        author="model",
        content=types.Content(role="model", parts=[types.Part(text="hi")]),
    )
    await service.append_event(session, event)
    ours = await session_store.get_events("adk/s/my_app/u/s", type="adk.event")
    assert len(ours) == 1
    assert ours[0].data["id"] == event.id
    assert ours[0].correlation_id == "inv"
    assert session._storage_update_marker is not None
    assert session._storage_update_marker.split("@")[0] == str(ours[0].sequence_number)
    records = await session_store.list_sessions(agent_id="adk/my_app/u")
    assert [r.id for r in records] == ["adk/s/my_app/u/s"]


async def test_service_from_url_owns_its_store(session_store_url: str) -> None:  # noqa: F811
    if session_store_url.startswith("memory"):
        pytest.skip("a memory store is gone once closed")
    async with StoreSessionService(uri="agent-session-store+" + session_store_url) as first:
        await first.create_session(app_name="app", user_id="u", session_id="s", state={"k": 1})
    async with StoreSessionService(session_store_url) as second:
        got = await second.get_session(app_name="app", user_id="u", session_id="s")
    assert got is not None
    assert got.state == {"k": 1}


@pytest.mark.parametrize(
    "names",
    [
        {"app_name": "", "user_id": "u"},
        {"app_name": "a", "user_id": None},
        {"app_name": "a", "user_id": "u", "session_id": ""},
        {"app_name": 3, "user_id": "u"},
    ],
)
async def test_bad_names_are_refused_before_any_write(
    service: StoreSessionService,
    session_store: Any,  # noqa: F811
    names: dict[str, Any],
) -> None:
    with pytest.raises(InputValidationError):
        await service.create_session(**names)
    with pytest.raises(InputValidationError):
        await service.get_session(**{"session_id": "s", **names})
    assert await session_store.list_sessions() == []


async def test_events_newer_than_the_record_are_not_returned(
    service: StoreSessionService,
    session_store: Any,  # noqa: F811
) -> None:
    """State and events come from one revision even if a write lands between the reads."""
    from agent_session_store import CustomEventType
    from agent_session_store import Event as StoreEvent

    session = await service.create_session(app_name="my_app", user_id="u", session_id="s")
    await service.append_event(session, Event(author="user", invocation_id="inv1"))
    # an event in the log whose record write is not visible yet
    stray = Event(author="user", invocation_id="stray")
    await session_store.append_event(
        StoreEvent(
            type=CustomEventType("adk.event"),
            session_id="adk/s/my_app/u/s",
            data=stray.model_dump(mode="json", exclude_none=True),
        )
    )
    for config in (None, GetSessionConfig(num_recent_events=1)):
        got = await service.get_session(
            app_name="my_app", user_id="u", session_id="s", config=config
        )
        assert got is not None
        assert [e.invocation_id for e in got.events] == ["inv1"]
        assert got._storage_update_marker is not None
        assert got._storage_update_marker.split("@")[0] == "2"


def _validated_twin(session: Session) -> Session:
    """What ADK's own validating constructor builds from the same values."""
    fields = {name: getattr(session, name) for name in session.model_fields_set}
    twin = Session(**fields)
    twin._storage_update_marker = session._storage_update_marker
    return twin


async def test_built_sessions_equal_the_validating_constructor(
    service: StoreSessionService,
) -> None:
    """The sessions the service builds without pydantic validation (for speed) are exactly
    the validated ones: fields, fields-set, private marker; each state its own dict."""
    created = await service.create_session(
        app_name="app", user_id="u", state={"k": 1, "app:a": 2, "user:b": 3, "temp:t": 4}
    )
    await service.create_session(app_name="app", user_id="u", state={"k": 5})
    fetched = await service.get_session(app_name="app", user_id="u", session_id=created.id)
    assert fetched is not None
    await service.append_event(fetched, Event(author="user", timestamp=_now()))
    fetched = await service.get_session(app_name="app", user_id="u", session_id=created.id)
    listed = (await service.list_sessions(app_name="app", user_id="u")).sessions
    assert fetched is not None and len(listed) == 2
    for built in [created, fetched, *listed]:
        twin = _validated_twin(built)
        assert built == twin
        assert built.model_fields_set == twin.model_fields_set
        assert built._storage_update_marker == twin._storage_update_marker is not None
        assert type(built.last_update_time) is float
        assert built.model_dump() == twin.model_dump()
    assert fetched.model_fields_set >= {"events"} and len(fetched.events) == 1
    assert listed[0].model_fields_set == {"id", "app_name", "user_id", "state", "last_update_time"}
    assert listed[0].state["app:a"] == 2 and listed[0].state["user:b"] == 3
    listed[0].state["mutated"] = True  # sessions share no state dict
    assert "mutated" not in listed[1].state
