"""Every test module and benchmark takes its server addresses from one place, and ``make
test`` / ``make bench`` export what scripts/ensure-services.sh chose (.services/env)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Files that may spell the default addresses: the one place itself, and tests of URL parsing
# or redaction that never connect.
_MAY_NAME = {
    "tests/service_urls.py",
    "bench/common.py",
    "tests/test_ensure_services.py",
    "tests/test_redaction.py",
    "tests/test_models.py",
    "tests/test_imports.py",  # opens a redis URL in a venv without the extra: no connection
}
_ADDRESS = re.compile(r"(127\.0\.0\.1|localhost):(5432|6379)\b|port=(5432|6379)\b")
_PARSE_ONLY = ":s3cret@"  # URLs with a made-up password: parse and redaction tests


def test_no_module_hard_codes_the_servers() -> None:
    found = []
    for path in sorted([*ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel in _MAY_NAME:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if _ADDRESS.search(line) and _PARSE_ONLY not in line and not _is_doc(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "use tests/service_urls.py (bench/common.py) instead:\n" + "\n".join(found)


def _is_doc(line: str) -> bool:
    """A docstring or comment naming the default, not connecting to it."""
    text = line.strip()
    return not any(q in text for q in ('"', "'")) or text.startswith("#")


def test_the_addresses_come_from_the_environment() -> None:
    env = {
        **os.environ,
        "ASS_TEST_PG_DSN": "postgresql://postgres@127.0.0.1:15432/test",
        "ASS_TEST_REDIS_URL": "redis://127.0.0.1:16379/0",
    }
    code = (
        "import service_urls as s, bench.common as b; "
        "print(s.PG_DSN, s.REDIS_URL, b.PG_DSN, b.REDIS_URL, s.pg_dsn(database='x'))"
    )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), str(ROOT / "src")])
    for name in ("BENCH_PG", "BENCH_POSTGRES_DSN", "BENCH_REDIS"):
        env.pop(name, None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    pg, redis = env["ASS_TEST_PG_DSN"], env["ASS_TEST_REDIS_URL"]
    assert out.stdout.split() == [
        pg,
        redis,
        pg,
        redis,
        "postgresql://postgres@127.0.0.1:15432/x",
    ]


def test_make_test_and_bench_export_the_services_env() -> None:
    """The recipes of ``make test`` and ``make bench`` run with .services/env exported: a
    probe recipe built the same way sees its values (run in a scratch dir, not the repo)."""
    for target, command in (("test", "-m pytest"), ("bench", "-m bench")):
        dry = subprocess.run(
            ["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, timeout=60
        )
        (line,) = [x for x in dry.stdout.splitlines() if command in x]
        assert line.startswith("set -a; . ./.services/env; set +a;"), line


def test_services_env_reaches_the_recipe(tmp_path: Path) -> None:
    (tmp_path / ".services").mkdir()
    (tmp_path / ".services" / "env").write_text(
        "ASS_TEST_PG_DSN=postgresql://postgres@127.0.0.1:15432/test\n"
        "ASS_TEST_REDIS_URL=redis://127.0.0.1:16379/0\n"
    )
    probe = "probe: ; @$(SERVICES_ENV) echo $$ASS_TEST_PG_DSN $$ASS_TEST_REDIS_URL"
    out = subprocess.run(
        ["make", "-s", "-C", str(tmp_path), "-f", str(ROOT / "Makefile"), "--eval", probe, "probe"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.split() == [
        "postgresql://postgres@127.0.0.1:15432/test",
        "redis://127.0.0.1:16379/0",
    ], out.stderr
