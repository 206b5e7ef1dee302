"""``python -m bench [--quick] [--only NAME ...]``: run every benchmark module, print a
markdown table and write bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from .common import Row

MODULES = [
    "core",
    "encoding",
    "query_sqlite",
    "postgres",
    "redis_bench",
    "artifacts",
    "history",
    "redaction",
    "integrations_openai_langgraph",
    "integrations_adk",
    "server",
]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    lines = [
        "| backend | case | ours | raw | unit | ours vs raw | bar | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        ok = "" if r.passed is None else ("yes" if r.passed else "**NO**")
        lines.append(
            f"| {r.backend} | {r.case} | {_fmt(r.ours)} | {_fmt(r.raw)} | {r.unit} | {ratio} "
            f"| {r.bar} | {ok} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", nargs="*", default=None, help=f"modules among {MODULES}")
    parser.add_argument("--out", default="bench/results.json")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for name in args.only or MODULES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"(no bench module {name!r} yet)", file=sys.stderr)
                continue
            raise
        print(f"running bench.{name} ...", file=sys.stderr, flush=True)
        got: list[Row] = asyncio.run(module.run(quick=args.quick))
        rows.extend(got)
        print(table(got), file=sys.stderr, flush=True)
    print(table(rows))
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "quick": args.quick,
        "rows": [r.as_dict() for r in rows],
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
