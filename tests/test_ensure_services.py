"""scripts/ensure-services.sh on a machine whose servers do not fit: it brings its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ensure-services.sh"


def _copy(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "ensure-services.sh")
    return tmp_path / "scripts" / "ensure-services.sh"


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_own_servers_when_the_machines_do_not_fit(tmp_path: Path) -> None:
    script = _copy(tmp_path)
    env = {**os.environ, "ENSURE_SERVICES_OWN_PG": "1", "ENSURE_SERVICES_OWN_REDIS": "1"}
    out = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=180
    )
    own = tmp_path / ".services"
    try:
        assert out.returncode == 0, out.stderr
        found = _env(own / "env")
        pg_port = found["ASS_TEST_PG_DSN"].rsplit(":", 1)[1].split("/")[0]
        redis_port = found["ASS_TEST_REDIS_URL"].rsplit(":", 1)[1].split("/")[0]
        assert pg_port != "5432" and redis_port != "6379"
        ping = subprocess.run(
            ["psql", "-w", found["ASS_TEST_PG_DSN"], "-tAc", "SELECT 1"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ping.stdout.strip() == "1", ping.stderr
        pong = subprocess.run(
            ["redis-cli", "-p", redis_port, "ping"], capture_output=True, text=True, timeout=30
        )
        assert pong.stdout.strip() == "PONG"
        again = subprocess.run(
            ["bash", str(script)], env=env, capture_output=True, text=True, timeout=180
        )  # a second run reuses what the first started
        assert again.returncode == 0, again.stderr
        assert _env(own / "env") == found
    finally:
        pg_dir = own / "pg-dir"
        data = Path(pg_dir.read_text().strip()) / "data" if pg_dir.exists() else own / "none"
        if data.exists():
            pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
            as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
            subprocess.run(
                [*as_postgres, str(pg_ctl), "-D", str(data), "stop", "-m", "fast"],
                capture_output=True,
                timeout=60,
            )
        port_file = own / "redis" / "port"
        if port_file.exists():
            subprocess.run(
                ["redis-cli", "-p", port_file.read_text().strip(), "shutdown", "nosave"],
                capture_output=True,
                timeout=30,
            )


def test_refuses_a_redis_older_than_7(tmp_path: Path) -> None:
    script = _copy(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "redis-server").write_text(
        "#!/bin/sh\necho 'Redis server v=6.2.14 sha=00000000:0 malloc=jemalloc bits=64'\n"
    )
    (fake / "redis-server").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    out = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert "6.2.14" in out.stderr and "Redis 7" in out.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to hide a package")
def test_names_missing_packages_without_root() -> None:
    # pytest's tmp_path sits in a root-only folder: an unprivileged user needs one of its own
    tmp_path = Path(tempfile.mkdtemp(prefix="ass-ensure-"))
    tmp_path.chmod(0o755)
    try:
        _missing_packages_without_root(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _missing_packages_without_root(tmp_path: Path) -> None:
    script = _copy(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    # a PATH with python3 and core tools but no redis-cli, run as an unprivileged user
    for tool in (
        "python3",
        "bash",
        "sed",
        "cat",
        "id",
        "dirname",
        "mkdir",
        "ls",
        "sort",
        "tail",
        "grep",
    ):
        found = shutil.which(tool)
        assert found
        (fake / tool).symlink_to(found)
    tmp_path.chmod(0o777)
    (tmp_path / "scripts").chmod(0o777)
    runuser = shutil.which("runuser")
    assert runuser
    out = subprocess.run(
        [runuser, "-u", "nobody", "--", "/bin/bash", str(script)],
        env={"PATH": str(fake)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "missing packages" in out.stderr and "redis-server" in out.stderr
    assert "as root" in out.stderr
