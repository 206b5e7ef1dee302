"""JSON bytes for responses and SSE frames: orjson (the ``server`` extra) where it can,
``json`` otherwise.

orjson encodes a 100-event page about 20x faster than ``json`` (bench/server.py), but it
refuses integers beyond 64 bits, which a stored payload may hold; those few values go
through ``json``, so every stored value still encodes as it did.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is in the server extra
    orjson = None  # type: ignore[assignment]

__all__ = ["FastJSONResponse", "dumps"]


def _slow(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


if orjson is not None:
    _orjson_dumps = orjson.dumps
    _orjson_error = orjson.JSONEncodeError

    def dumps(value: Any) -> bytes:
        """Compact UTF-8 JSON of plain values (dicts with str keys, lists, scalars)."""
        try:
            return _orjson_dumps(value)
        except _orjson_error:
            return _slow(value)

else:  # pragma: no cover
    dumps = _slow


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` whose body is encoded by :func:`dumps`."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
