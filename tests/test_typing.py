"""Stores are precisely typed: mypy --strict catches a misspelt method, and help() on a concrete
store's method shows the contract's docstring (issue 14.2)."""

from __future__ import annotations

import pydoc
from pathlib import Path

from mypy import api as mypy_api

from agent_session_store import open_artifact_store, open_session_store, open_store, sync
from agent_session_store.ports import SessionStore

USER_CODE = """
from agent_session_store import open_artifact_store, open_session_store, open_store, sync

async def main() -> None:
    store = open_session_store("sqlite:///x.db")
    await store.get_evnts("s")
    events = await store.get_events("s")
    reveal_type(events)
    artifacts = open_artifact_store("memory://")
    await artifacts.gett("k")
    both = open_store("memory://", "memory://")
    await both.put("k", b"v")
    await both.get_evnts("s")

def blocking() -> None:
    with sync.open_session_store("memory://") as s:
        s.get_evnts("s")
        n: str = s.get_latest_sequence("s")
"""


def test_mypy_strict_catches_misspelt_store_methods(tmp_path: Path) -> None:
    path = tmp_path / "user_code.py"
    path.write_text(USER_CODE)
    out, err, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(path)]
    )
    assert status == 1, out + err
    lines = out.splitlines()

    def reported(line: int, fragment: str) -> bool:
        return any(f"user_code.py:{line}:" in x and fragment in x for x in lines)

    assert reported(6, 'has no attribute "get_evnts"'), out
    assert reported(8, 'Revealed type is "list[agent_session_store.models.Event]"'), out
    assert reported(10, 'has no attribute "gett"'), out
    assert reported(13, 'has no attribute "get_evnts"'), out
    assert reported(17, 'has no attribute "get_evnts"'), out
    assert reported(18, "Incompatible types in assignment"), out
    assert sum(": error:" in x for x in lines) == 5, out


def _help(thing: object) -> str:
    return pydoc.render_doc(thing, renderer=pydoc.plaintext)  # type: ignore[attr-defined]


def test_help_on_a_concrete_store_shows_the_contract_docstring(tmp_path: Path) -> None:
    contract_doc = SessionStore.get_events.__doc__
    assert contract_doc and "long-poll" in contract_doc
    first_line = contract_doc.strip().splitlines()[0]
    for url in ("memory://", f"sqlite:///{tmp_path}/h.db"):
        store = open_session_store(url)
        assert first_line in _help(store.get_events)
        assert "Append a batch atomically" in _help(store.append_events)
    with sync.open_session_store("memory://") as blocking:
        assert "long-poll" in _help(blocking.get_events)
    assert open_store("memory://", "memory://") is not None
    assert open_artifact_store("memory://") is not None
