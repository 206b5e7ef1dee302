"""The ``artifacts`` commands, run as the real program in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from moto_s3 import S3Endpoint


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "agent_session_store", "artifacts", *args],
        input=stdin,
        capture_output=True,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )


def ok(*args: str, stdin: bytes | None = None) -> bytes:
    out = cli(*args, stdin=stdin)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def _round_trip(url: str, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    data = os.urandom(3 << 20) + b"tail"
    source.write_bytes(data)
    ok("put", url, "runs/r1/patch.diff", str(source))
    ok("put", url, "from-stdin", "-", stdin=b"piped bytes")
    ok("put", url, "ünï/köy", "-", stdin=b"")
    assert ok("get", url, "runs/r1/patch.diff") == data
    ok("get", url, "from-stdin", "-o", str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == b"piped bytes"
    assert ok("ls", url).decode().splitlines() == ["from-stdin", "runs/r1/patch.diff", "ünï/köy"]
    assert json.loads(ok("ls", url, "runs/", "--json")) == ["runs/r1/patch.diff"]
    st = json.loads(ok("stat", url, "runs/r1/patch.diff", "--json"))
    assert st["size"] == len(data) and st["sha256"] == hashlib.sha256(data).hexdigest()
    assert st["key"] == "runs/r1/patch.diff" and st["modified_at"].endswith("+00:00")
    assert b"sha256: " in ok("stat", url, "from-stdin")
    ok("rm", url, "from-stdin")
    ok("rm", url, "from-stdin")  # absent is fine
    assert json.loads(ok("ls", url, "--json")) == ["runs/r1/patch.diff", "ünï/köy"]


def test_commands_on_the_file_store(tmp_path: Path) -> None:
    _round_trip(f"file://{tmp_path}/store", tmp_path)


def test_commands_on_the_s3_store(
    tmp_path: Path, s3_endpoint: S3Endpoint, unique_name: str
) -> None:
    _round_trip(s3_endpoint.store_url(f"{unique_name}/"), tmp_path)


def test_errors_have_codes_and_exit_status(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    missing = cli("get", url, "nope")
    assert missing.returncode == 1 and b"[not_found]" in missing.stderr
    assert missing.stdout == b""
    bad_url = cli("ls", "gopher://x")
    assert bad_url.returncode == 2 and b"[validation_error]" in bad_url.stderr
    long_key = cli("put", url, "k" * 1025, "-", stdin=b"x")
    assert long_key.returncode == 2 and b"[validation_error]" in long_key.stderr
    usage = cli("put", url)
    assert usage.returncode == 2 and b"usage" in usage.stderr


def test_large_file_is_streamed(tmp_path: Path) -> None:
    """A 64 MiB file through put and get -o; the progress bar stays off without a TTY."""
    source = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with source.open("wb") as f:
        for i in range(64):
            f.write(block[i:] + block[:i])
    url = f"file://{tmp_path}/store"
    put = cli("put", url, "big", str(source))
    assert put.returncode == 0 and put.stderr == b""
    ok("get", url, "big", "-o", str(tmp_path / "back.bin"))
    with source.open("rb") as a, (tmp_path / "back.bin").open("rb") as b:
        assert (
            hashlib.file_digest(a, "sha256").hexdigest()
            == hashlib.file_digest(b, "sha256").hexdigest()
        )


def test_put_if_absent_and_cleanup(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/root"
    ok("put", url, "once", "-", "--if-absent", stdin=b"first")
    out = cli("put", url, "once", "-", "--if-absent", stdin=b"second")
    assert out.returncode == 1 and b"[already_exists]" in out.stderr
    assert ok("get", url, "once") == b"first"
    leftover = tmp_path / "root" / ".tmp-0123456789abcdef"
    leftover.write_bytes(b"a killed writer's temp file")
    assert ok("cleanup", url).strip() == b"removed 0"  # younger than the grace period
    assert ok("cleanup", url, "--older-than", "0").strip() == b"removed 1"
    assert not leftover.exists()
    assert ok("cleanup", "memory://").strip() == b"removed 0"
