"""The OpenAI Agents SDK's own runner tests, with our adapter as their session, per backend.

Their sdist (pinned below, the version our extra pins) is downloaded and unpacked into
``.cache/`` at test time and never committed. Every test file of theirs that uses
``tests/utils/simple_session.py`` runs, in a child pytest process, with
``openai_sdk_plugin`` swapping their list-backed session for ours (see that module).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest
from olg_backends import BACKENDS, v2_missing

SDK_VERSION = "0.24.0"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "openai-agents"
HERE = Path(__file__).resolve().parent


def sdk_tree() -> Path:
    """Their unpacked sdist, downloaded once with pip (PyPI is reachable here)."""
    tree = CACHE / f"openai_agents-{SDK_VERSION}"
    if (tree / "tests" / "utils" / "simple_session.py").exists():
        return tree
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"openai-agents=={SDK_VERSION}",
            "-d",
            str(CACHE),
        ],
        check=True,
    )
    with tarfile.open(CACHE / f"openai_agents-{SDK_VERSION}.tar.gz") as tar:
        tar.extractall(CACHE, filter="data")
    return tree


def their_session_tests(tree: Path) -> list[str]:
    found = []
    for path in sorted((tree / "tests").rglob("test_*.py")):
        if "simple_session" in path.read_text(encoding="utf-8"):
            found.append(str(path.relative_to(tree)))
    return found


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kind", BACKENDS)
def test_sdk_session_tests_pass_on_our_adapter(kind: str, tmp_path: Path) -> None:
    if (why := v2_missing(kind)) is not None:
        pytest.skip(why)
    assert version("openai-agents") == SDK_VERSION
    tree = sdk_tree()
    files = their_session_tests(tree)
    assert len(files) >= 20, files
    report = tmp_path / "report.json"
    env = {
        **os.environ,
        "OLG_BACKEND": kind,
        "OLG_REPORT": str(report),
        # their own source of the same version, so their traceback-path checks hold
        "PYTHONPATH": os.pathsep.join(
            [str(tree / "src"), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "openai_sdk_plugin",
            "-x",
            *files,
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = json.loads(report.read_text())
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert summary["failed"] == 0, summary["failures"]
    assert summary["using_our_session"] >= 600, summary
    assert summary["using_our_session_passed"] == summary["using_our_session"]
