"""A SQLite store whose file was read-only recovers once the file is writable again.

SQLite opens a file it may not write read-only, and that connection stays read-only after
a chmod makes the file writable; the writer drops such a connection on "readonly", so the
next write opens a fresh one. Root ignores file modes, so as root the scenario runs in a
child process without CAP_DAC_OVERRIDE (util-linux ``setpriv``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

SRC = Path(__file__).resolve().parent.parent / "src"

_SCENARIO = r"""
import asyncio, os, sys
from agent_session_store import open_session_store
from agent_session_store.errors import StoreError
from agent_session_store.models import Event, EventType

path = sys.argv[1]

def ev():
    return Event(type=EventType.MESSAGE_STREAMED, session_id="s", data={"x": 1})

async def main():
    async with open_session_store(f"sqlite:///{path}?auto_migrate=true") as store:
        await store.append_events([ev()])
    os.chmod(path, 0o444)
    async with open_session_store(f"sqlite:///{path}") as store:
        try:
            await store.append_events([ev()])
        except StoreError as exc:
            print("read-only:", exc.code)
        else:
            print("read-only: written")
        assert len(await store.get_events("s")) == 1  # reads keep working
        os.chmod(path, 0o644)
        try:
            await store.append_events([ev()])
            print("writable again:", "ok", await store.get_latest_sequence("s"))
        except StoreError as exc:
            print("writable again:", exc.code)

asyncio.run(main())
"""


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be tested")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", caps, "--inh-caps", caps, "--"]


def test_store_opened_on_a_read_only_file_writes_once_it_is_writable(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    path = tmp_path / "ro.db"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    check = "import os, sys; open(sys.argv[1], 'w').close(); os.chmod(sys.argv[1], 0o444)\n"
    check += (
        "try:\n open(sys.argv[1], 'w'); print('writable')\nexcept PermissionError: print('denied')"
    )
    mode = subprocess.run(
        [*_unprivileged(), sys.executable, "-c", check, str(probe)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert mode.stdout.strip() == "denied", "file modes are not enforced here"
    done = subprocess.run(
        [*_unprivileged(), sys.executable, "-c", _SCENARIO, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "read-only: storage_error",
        "writable again: ok 2",
    ], done.stdout + done.stderr
