"""A demo session with every kind of row the inspector draws: conversation, streamed text,
parallel tool calls paired by ``tool_call_id``, an error, a rewind, usage, artifacts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agent_session_store import Event, EventType, Run, RunStatus, Session, SessionStatus
from agent_session_store.models import utcnow
from agent_session_store.ports import ArtifactStore, SessionStore

PATCH = """diff --git a/widgets/parse.py b/widgets/parse.py
--- a/widgets/parse.py
+++ b/widgets/parse.py
@@ -10,3 +10,5 @@ def parse(text):
-    first = text.splitlines()[0]
+    lines = text.splitlines()
+    if not lines:
+        return []
+    first = lines[0]
"""


async def seed_demo(
    store: SessionStore, artifacts: ArtifactStore | None = None, sid: str = "ses_demo"
) -> str:
    start = utcnow() - timedelta(minutes=5)
    session = Session(
        id=sid,
        agent_id="code-helper",
        status=SessionStatus.ACTIVE,
        tags=["demo", "coding"],
        metadata={"repo": "acme/widgets"},
        created_at=start,
        updated_at=start,
    )
    await store.save_session(session)
    runs = [
        Run(
            id=f"run_{sid}_1",
            session_id=sid,
            status=RunStatus.COMPLETED,
            provider="anthropic",
            started_at=start,
            ended_at=start + timedelta(seconds=42),
            turn_count=2,
            token_usage={"input_tokens": 5120, "output_tokens": 412},
            cost_usd=0.0215,
            provider_metadata={"model": "claude"},
        ),
        Run(
            id=f"run_{sid}_2",
            session_id=sid,
            status=RunStatus.FAILED,
            provider="openai",
            started_at=start + timedelta(minutes=1),
            ended_at=start + timedelta(minutes=1, seconds=8),
            turn_count=1,
            token_usage={"input_tokens": 2300, "output_tokens": 950},
            cost_usd=0.0122,
        ),
    ]
    for run in runs:
        await store.save_run(run)
    r1, r2 = runs[0].id, runs[1].id

    def ev(kind: EventType, run: str | None = r1, **data: Any) -> Event:
        return Event(type=kind, session_id=sid, run_id=run, data=data)

    events = [
        ev(EventType.SESSION_STARTED),
        ev(EventType.RUN_STARTED, model="claude"),
        ev(EventType.MESSAGE_SENT, role="user", content="Why does test_parse fail on empty input?"),
        ev(
            EventType.MESSAGE_STREAMED,
            role="assistant",
            delta="Let me read the parser ",
            message_id="m1",
        ),
        ev(
            EventType.MESSAGE_STREAMED,
            role="assistant",
            delta="and run the tests.",
            message_id="m1",
        ),
        # Two calls in parallel; results come back in the other order.
        ev(
            EventType.TOOL_CALL_STARTED,
            tool_name="read_file",
            tool_call_id="call_read",
            tool_input={"path": "widgets/parse.py"},
        ),
        ev(
            EventType.TOOL_CALL_STARTED,
            tool_name="run_tests",
            tool_call_id="call_tests",
            tool_input={"select": "test_parse"},
        ),
        ev(
            EventType.TOOL_CALL_COMPLETED,
            tool_name="run_tests",
            tool_call_id="call_tests",
            tool_output={"failed": 1, "passed": 11},
            duration_ms=2140,
        ),
        ev(
            EventType.TOOL_CALL_COMPLETED,
            tool_name="read_file",
            tool_call_id="call_read",
            tool_output={"lines": 88},
        ),
        ev(EventType.MESSAGE_RECEIVED, role="assistant", content="I will try a quick fix first."),
        ev(EventType.MESSAGE_RECEIVED, role="assistant", content="(a wrong turn, undone below)"),
        ev(EventType.HISTORY_REWOUND, to_sequence=10),
        ev(
            EventType.TOOL_CALL_STARTED,
            tool_name="apply_patch",
            tool_call_id="call_patch",
            tool_input={"file": "widgets/parse.py"},
        ),
        ev(
            EventType.TOOL_CALL_COMPLETED,
            tool_name="apply_patch",
            tool_call_id="call_patch",
            tool_output={"ok": True},
        ),
        ev(
            EventType.WORKSPACE_DIFF_COMPUTED,
            artifact_key=f"sessions/{sid}/fix.diff",
            files_changed=1,
        ),
        ev(EventType.TOKEN_USAGE_UPDATED, input_tokens=5120, output_tokens=412),
        ev(
            EventType.MESSAGE_RECEIVED,
            role="assistant",
            content="parse() indexed line[0] before checking for empty input; fixed.",
        ),
        ev(EventType.RUN_COMPLETED, output={"answer": "fixed"}),
        ev(EventType.RUN_STARTED, run=r2, model="gpt"),
        ev(
            EventType.TOOL_CALL_STARTED,
            run=r2,
            tool_name="deploy",
            tool_call_id="call_deploy",
            tool_input={"env": "staging"},
        ),
        ev(
            EventType.TOOL_CALL_FAILED,
            run=r2,
            tool_name="deploy",
            tool_call_id="call_deploy",
            error_message="permission denied: staging is locked",
        ),
        ev(
            EventType.ERROR_OCCURRED,
            run=r2,
            error_message="deploy failed",
            error_type="PermissionError",
        ),
        ev(EventType.RUN_FAILED, run=r2, error_message="deploy failed"),
    ]
    await store.append_events(events)
    if artifacts is not None:
        await artifacts.put(f"sessions/{sid}/fix.diff", PATCH.encode())
        await artifacts.put(f"sessions/{sid}/notes.txt", b"Empty input must parse to [].\n")
    return sid
