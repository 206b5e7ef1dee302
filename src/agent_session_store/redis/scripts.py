"""The Lua scripts, read from ``lua/*.lua`` next to this module.

A line ``-- #include prelude`` in a script is replaced by ``lua/prelude.lua`` (the helpers
several scripts share), so what Redis runs is one self-contained script per file.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["NAMES", "source"]

NAMES = (
    "write",
    "read",
    "list",
    "delete",
    "gc",
    "delete_begin",
    "delete_end",
    "fence",
    "index",
    "unindex",
    "cad",
    "prune",
)
_INCLUDE = "-- #include prelude\n"


def _read(name: str) -> str:
    return files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The script text as sent to Redis; its first line stays the ``#!lua`` shebang."""
    text = _read(name)
    if not text.startswith("#!lua"):
        raise RuntimeError(f"lua/{name}.lua must start with a #!lua shebang line")
    return text.replace(_INCLUDE, _read("prelude"), 1)
