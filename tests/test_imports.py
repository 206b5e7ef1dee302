"""What a base install (no extras) can import, and what it is told when an extra is missing;
the package builds as a wheel and an sdist, and the wheel works in a fresh venv (issue 14.6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import agent_session_store

ROOT = Path(__file__).resolve().parents[1]

# Hide every optional driver, as on `pip install agent-session-store` without extras.
_BASE_INSTALL = """
import json, sys
for name in ("asyncpg", "redis", "aiobotocore", "aiohttp", "botocore"):
    sys.modules[name] = None
from agent_session_store import *  # must work on a base install
import agent_session_store
from agent_session_store.errors import StoreError
out = {"star": sorted(k for k in dir() if not k.startswith("_"))}
for name in ("PostgresSessionStore", "RedisSessionStore", "S3ArtifactStore"):
    try:
        getattr(agent_session_store, name)
    except StoreError as err:
        out[name] = {"code": err.code, "message": err.message, "extra": err.details["extra"]}
try:
    open_session_store("redis://127.0.0.1:6379/0")
except StoreError as err:
    out["open"] = err.code
import importlib
for module in ("agent_session_store.postgres", "agent_session_store.redis",
               "agent_session_store.artifacts.s3"):
    try:
        importlib.import_module(module)
    except StoreError as err:  # a submodule imported by name says which extra, too
        out[module] = {"code": err.code, "extra": err.details["extra"]}
# the base install's backends work
import asyncio
async def main():
    async with open_session_store("memory://") as store:
        await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="s"))
        return await store.get_latest_sequence("s")
out["memory"] = asyncio.run(main())
print(json.dumps(out))
"""


def test_star_import_and_missing_extras_on_a_base_install() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _BASE_INSTALL], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for name in ("open_session_store", "SQLiteSessionStore", "Event", "StoreError"):
        assert name in out["star"]
    for name, extra in (
        ("PostgresSessionStore", "postgres"),
        ("RedisSessionStore", "redis"),
        ("S3ArtifactStore", "s3"),
    ):
        assert out[name]["code"] == "dependency_not_available"
        assert out[name]["extra"] == extra
        assert f"pip install 'agent-session-store[{extra}]'" in out[name]["message"]
        assert f"pip install -e '.[{extra}]'" in out[name]["message"]  # true from a checkout
    assert out["open"] == "dependency_not_available"
    for module, extra in (
        ("agent_session_store.postgres", "postgres"),
        ("agent_session_store.redis", "redis"),
        ("agent_session_store.artifacts.s3", "s3"),
    ):
        assert out[module] == {"code": "dependency_not_available", "extra": extra}
    assert out["memory"] == 1


def test_all_names_exist() -> None:
    for name in agent_session_store.__all__:
        assert getattr(agent_session_store, name) is not None


@pytest.mark.timeout(600)
def test_wheel_and_sdist_build_and_the_wheel_installs_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
        env=env,
    )
    wheels = list(dist.glob("*.whl"))
    sdists = list(dist.glob("*.tar.gz"))
    version = agent_session_store.__version__
    assert [w.name for w in wheels] == [f"agent_session_store-{version}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"agent_session_store-{version}.tar.gz"]
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheels[0])],
        check=True,
        capture_output=True,
        timeout=600,
        env=env,
    )
    check = (
        "import json, agent_session_store as a\n"
        "from agent_session_store import *\n"
        "from agent_session_store import events, sync\n"
        "try:\n"
        "    a.RedisSessionStore\n"
        "except a.StoreError as err:\n"
        "    print(json.dumps([a.__version__, err.code, err.details['extra']]))\n"
    )
    out = subprocess.run(
        [str(python), "-c", check], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert json.loads(out.stdout) == [version, "dependency_not_available", "redis"]
    cli = subprocess.run(
        [str(fresh / "bin" / "agent-session-store"), "--version"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert version in cli.stdout
