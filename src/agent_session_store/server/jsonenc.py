"""JSON bytes for responses and SSE frames: orjson (the ``server`` extra) where it can,
``json`` otherwise.

orjson encodes a 100-event page about 20x faster than ``json`` (bench/server.py), but it
refuses integers beyond 64 bits, which a stored payload may hold; those few values go
through ``json``, so every stored value still encodes as it did.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse

from ..models import Event, Run, Session, iso

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is in the server extra
    orjson = None  # type: ignore[assignment]

__all__ = ["FastJSONResponse", "dumps", "dumps_api", "dumps_event", "dumps_events"]


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


def _stamp(value: datetime) -> datetime | str:
    """The datetime itself where orjson (``OPT_UTC_Z``) writes exactly what ``iso`` writes
    (UTC, a non-zero microsecond: orjson drops a zero fraction), else ``iso``'s text. Formatting
    in C saves ~2 us an event: most of the cost of encoding a page or an SSE frame."""
    return value if value.tzinfo is UTC and value.microsecond else iso(value)


def _event_doc(e: Event) -> dict[str, Any]:
    """``Event.to_dict`` (same keys, same order) with the timestamp left to orjson."""
    return {
        "id": e.id,
        "type": e.type.value,
        "session_id": e.session_id,
        "run_id": e.run_id,
        "timestamp": _stamp(e.timestamp),
        "sequence_number": e.sequence_number,
        "data": e.data,
        "metadata": e.metadata,
        "schema_version": e.schema_version,
        "provider": e.provider,
        "correlation_id": e.correlation_id,
    }


if orjson is not None:
    _EVENT_OPTIONS = orjson.OPT_UTC_Z

    def dumps_event(event: Event) -> bytes:
        """One event as ``dumps(event.to_dict())`` encodes it, byte for byte, faster."""
        try:
            return _orjson_dumps(_event_doc(event), option=_EVENT_OPTIONS)
        except _orjson_error:
            return _slow(event.to_dict())

    _Fragment = getattr(orjson, "Fragment", None)

    def dumps_events(events: list[Event], **rest: Any) -> bytes:
        """``dumps_api({"items": events, **rest})``, byte for byte, in one orjson pass: an
        encoding call and a callback per event were a third of encoding a 100-event page.
        ``rest`` holds plain values only."""
        try:
            docs = [_event_doc(e) for e in events]
            return _orjson_dumps({"items": docs, **rest}, option=_EVENT_OPTIONS)
        except _orjson_error:
            return dumps_api({"items": events, **rest})

else:  # pragma: no cover

    def dumps_event(event: Event) -> bytes:
        return _slow(event.to_dict())

    def dumps_events(events: list[Event], **rest: Any) -> bytes:
        return dumps_api({"items": events, **rest})

    _Fragment = None


def _model(value: Any) -> Any:
    """What orjson cannot encode itself, as ``queries.to_json`` has it (models by their
    ``to_dict``, datetimes by ``iso``, dataclasses as dicts)."""
    if type(value) is Event and _Fragment is not None:
        return _Fragment(dumps_event(value))  # already JSON: orjson copies it in
    if isinstance(value, Session | Run | Event):
        return value.to_dict()
    if isinstance(value, datetime):
        return iso(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(type(value).__name__)


if orjson is not None:
    _API_OPTIONS = (
        orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
    )

    def dumps_api(value: Any) -> bytes:
        """A response body: models, query results, enums and datetimes included, encoded in
        one pass (no intermediate dicts of dicts), the same JSON as ``to_json`` gives."""
        try:
            return _orjson_dumps(value, default=_model, option=_API_OPTIONS)
        except _orjson_error:
            from .queries import to_json

            return _slow(to_json(value))

else:  # pragma: no cover

    def dumps_api(value: Any) -> bytes:
        from .queries import to_json

        return _slow(to_json(value))


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` whose body is encoded by :func:`dumps_api` (bytes: already encoded)."""

    def render(self, content: Any) -> bytes:
        if type(content) is bytes:
            return content
        return dumps_api(content)
