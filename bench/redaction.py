"""Issue 9's redaction bar: appends with the default redaction on cost at most a fifth more
than appends without (300-byte payloads, SQLite), measured alternately in one run."""

from __future__ import annotations

import statistics
import tempfile
import time

from agent_session_store import Event, EventType, open_session_store
from agent_session_store.redaction import RedactionConfig

from .common import Row

PAYLOAD = {
    "role": "assistant",
    "content": "Here is what I found in the repository: the build uses make and the tests run "
    "with pytest; nothing else is needed " + "x" * 120,
}


def _event(session_id: str) -> Event:
    return Event(type=EventType.MESSAGE_SENT, session_id=session_id, data=PAYLOAD)


async def run(quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with open_session_store(f"sqlite:///{tmp}/redaction.db") as store:
            on = RedactionConfig()
            for label, size, count in (
                ("sequential append", 1, 200 if quick else 1000),
                ("batch of 100", 100, 10 if quick else 40),
            ):
                plain: list[float] = []
                redacted: list[float] = []
                for _ in range(count):
                    for config, out, sid in ((None, plain, "plain"), (on, redacted, "red")):
                        store.redaction = config
                        batch = [_event(sid) for _ in range(size)]
                        start = time.perf_counter()
                        await store.append_events(batch)
                        out.append(time.perf_counter() - start)
                p, r = statistics.median(plain), statistics.median(redacted)
                row = Row(
                    "sqlite",
                    f"{label} with default redaction (vs without)",
                    size / r,
                    "events/s",
                    size / p,
                )
                row.bar = ">= 0.8 x without"
                row.passed = p / r >= 0.8
                rows.append(row)
    return rows
