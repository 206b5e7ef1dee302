"""Turning values into stored rows and back, shared by every backend.

One encoder means one set of rules: a payload that one backend rejects, every backend
rejects, with the same message (contract 3.8.1). Stored payloads are canonical JSON text,
so what a caller gets back is decoded from what was stored, never an alias of its own dict.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, NamedTuple

import orjson

from .errors import ValidationError
from .models import (
    EPOCH,
    FAST_MICROS,
    MAX_ID_BYTES,
    CustomEventType,
    Event,
    EventType,
    Run,
    Session,
    SessionStatus,
    check_id,
    check_text,
    from_micros,
)

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "EncodedEvent",
    "OverBudget",
    "check_rewind",
    "decode_event",
    "decode_held",
    "decode_page",
    "decode_run",
    "decode_session",
    "dumps",
    "encode_event",
    "encode_run",
    "encode_session",
    "loads_stored",
    "reencodes_same",
]

#: A single event's payload (data + metadata) above this is refused, like a document-size
#: limit in a document store: one runaway tool output must not stall every reader of a session.
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024

_MAX_DEPTH = 256
_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)
# json's C encoder, built once: JSONEncoder.encode rebuilds it on every call.
_c_encode = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, _encoder.default, encode_basestring, None, ":", ",", False, False, False
    )
)


def _dumps(value: Any) -> str:
    if _c_encode is None:
        return _encoder.encode(value)
    return "".join(_c_encode(value, 0))


#: Characters encoded or decoded in one C call at most, on the paths for large payloads: a C
#: call holds the GIL, so a longer one would stall the event loop even from another thread.
SLICE = 64 * 1024

_CONTROL = re.compile(r"[\x00-\x1f]")  # json.loads refuses these raw in a string
_orjson = orjson.dumps
_orjson_loads = orjson.loads
_from_timestamp = datetime.fromtimestamp
_OrjsonDecodeError = orjson.JSONDecodeError
_OrjsonError = orjson.JSONEncodeError


def _flat(value: dict[str, Any]) -> str:
    """A flat dict of checked ASCII text and ints within 64 bits: orjson writes exactly what
    json writes for those (tests/test_models.py compares), five times faster."""
    return _orjson(value).decode()


def _string(text: str) -> str:
    try:
        return _orjson(text).decode()
    except _OrjsonError:  # a lone surrogate: checked values have none, but stay exact
        encoded: str = encode_basestring(text)
        return encoded


class OverBudget(Exception):
    """A payload costs more than the caller's budget; raised before any encoding."""


def cost(value: Any, cap: int) -> int:
    """Encoding work of a JSON value, about its characters, counted up to just past ``cap``."""
    total = 0
    stack = [value]
    while stack:
        obj = stack.pop()
        total += 1
        if isinstance(obj, str):
            total += len(obj)
        elif isinstance(obj, dict):
            total += len(obj)
            for k, v in obj.items():
                if isinstance(k, str):
                    total += len(k)
                stack.append(v)
        elif isinstance(obj, list):
            stack.extend(obj)
        if total > cap:
            break
    return total


def _emit(obj: Any, out: list[str]) -> None:
    """Encode a checked value as ``_dumps`` would, in pieces of at most ``SLICE`` characters'
    work each, so a thread encoding it lets the event loop run between them."""
    if isinstance(obj, str):
        if len(obj) <= SLICE:
            out.append(_string(obj))
            return
        out.append('"')
        for i in range(0, len(obj), SLICE):
            out.append(_string(obj[i : i + SLICE])[1:-1])
        out.append('"')
    elif isinstance(obj, dict):
        if cost(obj, SLICE) <= SLICE:
            out.append(_dumps(obj))
            return
        sep = "{"
        for k, v in obj.items():
            out.append(sep)
            _emit(k, out)
            out.append(":")
            _emit(v, out)
            sep = ","
        out.append("{}" if sep == "{" else "}")
    elif isinstance(obj, list):
        if cost(obj, SLICE) <= SLICE:
            out.append(_dumps(obj))
            return
        out.append("[")
        start, run, first = 0, 0, True
        for i, v in enumerate(obj):
            c = cost(v, SLICE)
            if c > SLICE or run + c > SLICE:
                if i > start:  # the small ones before it, in one call
                    out.append(("" if first else ",") + _dumps(obj[start:i])[1:-1])
                    first = False
                start, run = i, 0
            if c > SLICE:
                if not first:
                    out.append(",")
                _emit(v, out)
                first = False
                start = i + 1
            else:
                run += c
        if start < len(obj):
            out.append(("" if first else ",") + _dumps(obj[start:])[1:-1])
        out.append("]")
    else:
        out.append(_dumps(obj))


def _sliced(value: Any) -> str:
    out: list[str] = []
    _emit(value, out)
    return "".join(out)


_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner json.loads uses, minus its wrapping


#: Integers orjson reads exactly; past them it gives a float (orjson 3.13), so a text holding
#: one is written with ``EXACT_MARK`` after it and read by json.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
#: JSON whitespace at the end of a text this package wrote: "read me with json" (big ints).
EXACT_MARK = " "


def _loads(text: str) -> Any:
    """Decode JSON text this package wrote (compact, no leading whitespace)."""
    if text == "{}":
        return {}
    if len(text) > SLICE:
        return _Sliced(text).value()  # json's own scanner: exact for every int
    if text[-1:] == EXACT_MARK:
        return json.loads(text)
    try:
        return _orjson_loads(text)  # twice json's speed, the same values for what we write
    except _OrjsonDecodeError:  # lone surrogate escapes, written elsewhere: json's reading
        value, end = _scan(text, 0)
        if end != len(text):  # as json.loads: a stored text with more after it is corrupt
            raise json.JSONDecodeError("Extra data", text, end) from None
        return value


#: An event's stored ``data`` or ``metadata`` text, decoded as ``decode_event`` does.
loads_stored = _loads


_DIGITS = frozenset("0123456789")


def reencodes_same(text: str) -> bool:
    """Whether JSON text built from payload texts this package wrote is what orjson writes
    for the values read back from it, byte for byte (False is only a "maybe not").

    The two encoders payloads are written with (json's, compact, ``ensure_ascii=False``;
    orjson's) write every string, int and literal alike, and floats alike except exponents
    (json ``1e-05``, orjson ``0.00001``): tests/test_encoding.py compares. So False for a
    float with an exponent (a digit, then ``e-`` or ``e+``) and for any ``\\u`` escape (text
    written elsewhere may escape what these write raw: ``\\u00e9`` reads back as ``é``);
    look-alikes inside strings say False too. ``EXACT_MARK`` (text orjson cannot read) is
    the caller's to check, per payload.
    """
    # One-character finds (memchr): a two-character one costs ~1 ns a character.
    find = text.find
    i = find("\\")
    while i != -1:  # each escape walked whole: an escaped backslash and "u" is no \\u escape
        if text[i + 1 : i + 2] == "u":
            return False
        i = find("\\", i + 2)
    for sign in ("-", "+"):
        i = find(sign, 2)
        while i != -1:
            if text[i - 1] == "e" and text[i - 2] in _DIGITS:
                return False
            i = find(sign, i + 1)
    return True


_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]
_WS = " \t\n\r"


class _Sliced:
    """A decoder for large JSON texts that does its work in C calls of at most ``SLICE``
    characters each (strings are cut between escapes), so decoding 12 MB in a thread leaves
    the event loop free to run; gives exactly what ``json.loads`` gives."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def value(self) -> Any:
        value, end = self._value(self._ws(0))
        if self._ws(end) != len(self.text):
            raise json.JSONDecodeError("Extra data", self.text, end)
        return value

    def _ws(self, i: int) -> int:
        text = self.text
        while i < len(text) and text[i] in _WS:
            i += 1
        return i

    def _value(self, i: int) -> tuple[Any, int]:
        text = self.text
        c = text[i : i + 1]
        if c == '"':
            return self._string(i + 1)
        if c == "{":
            return self._object(i + 1)
        if c == "[":
            return self._array(i + 1)
        try:
            return _scan(text, i)  # type: ignore[no-any-return]  # a number or literal: short
        except StopIteration:
            raise json.JSONDecodeError("Expecting value", text, i) from None

    def _object(self, i: int) -> tuple[dict[str, Any], int]:
        text = self.text
        out: dict[str, Any] = {}

        def member(i: int) -> int:
            if text[i : i + 1] != '"':
                raise json.JSONDecodeError("Expecting property name", text, i)
            key, i = self._string(i + 1)
            i = self._ws(i)
            if text[i : i + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
            out[key], i = self._value(self._ws(i + 1))
            return i

        return out, self._items(i, "}", member)

    def _array(self, i: int) -> tuple[list[Any], int]:
        out: list[Any] = []

        def element(i: int) -> int:
            value, i = self._value(i)
            out.append(value)
            return i

        return out, self._items(i, "]", element)

    def _items(self, i: int, close: str, item: Callable[[int], int]) -> int:
        """Comma-separated items up to ``close``; the end after it (objects and arrays)."""
        text = self.text
        i = self._ws(i)
        if text[i : i + 1] == close:
            return i + 1
        while True:
            i = self._ws(item(i))
            c = text[i : i + 1]
            if c == close:
                return i + 1
            if c != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            i = self._ws(i + 1)

    def _run(self, end: int, start: int) -> int:
        """How many backslashes end just before ``end`` (counting back to ``start``)."""
        text = self.text
        j = end
        while j > start and text[j - 1] == "\\":
            j -= 1
        return end - j

    def _string(self, start: int) -> tuple[str, int]:
        """The string whose text starts at ``start`` (after its quote) and its end."""
        text = self.text
        pieces: list[str] = []
        a = start  # always at an escape boundary
        while True:
            limit = a + SLICE
            q = text.find('"', a, limit)
            while q != -1 and self._run(q, a) % 2:
                q = text.find('"', q + 1, limit)  # an escaped quote
            if q != -1:
                pieces.append(self._piece(a, q))
                return self._join(pieces), q + 1
            if limit >= len(text):
                raise json.JSONDecodeError("Unterminated string", text, start - 1)
            cut = limit
            p = text.rfind("\\", cut - 6, cut)
            if p != -1 and self._run(p + 1, a) % 2:
                cut = p  # that backslash starts an escape: keep it whole for the next piece
            pieces.append(self._piece(a, cut))
            a = cut

    def _piece(self, a: int, b: int) -> str:
        text = self.text
        if text.find("\\", a, b) == -1 and not _CONTROL.search(text, a, b):
            return text[a:b]
        decoded: str = _scanstring('"' + text[a:b] + '"', 1)[0]  # escapes; raises as json
        return decoded

    @staticmethod
    def _join(pieces: list[str]) -> str:
        # A surrogate pair written as two escapes and cut between them: json joins it.
        for k in range(len(pieces) - 1):
            left, right = pieces[k], pieces[k + 1]
            if (
                left
                and right
                and "\ud800" <= left[-1] <= "\udbff"
                and "\udc00" <= right[0] <= "\udfff"
            ):
                pair = chr(0x10000 + ((ord(left[-1]) - 0xD800) << 10) + ord(right[0]) - 0xDC00)
                pieces[k], pieces[k + 1] = left[:-1], pair + right[1:]
        return "".join(pieces)


def _bad(where: str, what: str) -> ValidationError:
    return ValidationError(f"{where}: {what}", details={"field": where})


def check_json(value: Any, where: str) -> bool:
    """Refuse anything JSON would silently coerce or cannot carry (contract 2.4). True when
    the value holds an int past 64 bits (its text then needs ``EXACT_MARK``)."""
    return _walk(value, where, 0, set())


def _walk(obj: Any, path: str, depth: int, active: set[int]) -> bool:
    if isinstance(obj, str):
        check_text(obj, path)
        return False
    if obj is None or obj is True or obj is False:
        return False
    if isinstance(obj, int):
        return not _INT_MIN <= obj <= _INT_MAX
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise _bad(path, f"{obj!r} is not a JSON number (NaN and infinities are refused)")
        return False
    if depth > _MAX_DEPTH:
        raise _bad(path, f"nested deeper than {_MAX_DEPTH} levels")
    big = False
    if isinstance(obj, dict):
        key = id(obj)
        if key in active:
            raise _bad(path, "circular reference")
        active.add(key)
        for k, v in obj.items():
            if type(k) is not str and not isinstance(k, str):
                raise _bad(path, f"key {k!r} is a {type(k).__name__}; JSON object keys must be str")
            if not k.isascii() or "\x00" in k:
                check_text(k, path)
            tv = type(v)
            if tv is int:
                if not _INT_MIN <= v <= _INT_MAX:
                    big = True
                continue
            if tv is str and v.isascii() and "\x00" not in v:
                continue
            big = _walk(v, f"{path}.{k}", depth + 1, active) or big
        active.discard(key)
        return big
    if isinstance(obj, list):
        key = id(obj)
        if key in active:
            raise _bad(path, "circular reference")
        active.add(key)
        for i, v in enumerate(obj):
            big = _walk(v, f"{path}[{i}]", depth + 1, active) or big
        active.discard(key)
        return big
    if isinstance(obj, bytes | bytearray | memoryview):
        raise _bad(path, "bytes are not JSON; store large binary data as an artifact")
    raise _bad(
        path,
        f"a {type(obj).__name__} is not JSON (use dict, list, str, int, float, bool, None)",
    )


def dumps(value: Any, where: str) -> str:
    big = check_json(value, where)
    text = _dumps(value)
    return text + EXACT_MARK if big else text


def utf8_len(text: str) -> int:
    """UTF-8 size, a slice at a time (one ``encode`` of 12 MB would hold the GIL for long)."""
    if text.isascii():
        return len(text)
    return sum(len(text[i : i + SLICE].encode("utf-8")) for i in range(0, len(text), SLICE))


class EncodedEvent(NamedTuple):
    """An event as every backend stores it: scalar columns plus two JSON texts."""

    id: str
    session_id: str
    type: str
    run_id: str | None
    timestamp_us: int
    data: str
    metadata: str
    schema_version: int
    provider: str | None
    correlation_id: str | None


_PLAIN_DEPTH = 8


def _plain(obj: Any, depth: int, cap: int) -> int:
    """About the characters of a value made only of ASCII text without NUL, ints within 64
    bits, bools, None, and lists and dicts of those, a few levels deep: what orjson writes
    exactly as json does (``_flat``), with nothing left to check (the framework adapters'
    payloads: an item or a checkpoint nested in a dict). -1 for anything else, or past
    ``cap``: the full walk decides."""
    t = obj.__class__
    if t is str:
        return len(obj) if obj.isascii() and "\x00" not in obj else -1
    if t is int:
        return 1 if _INT_MIN <= obj <= _INT_MAX else -1
    if obj is None or t is bool:
        return 1
    if depth >= _PLAIN_DEPTH:
        return -1
    n = 1
    if t is dict:
        for k, v in obj.items():
            if k.__class__ is not str or not k.isascii() or "\x00" in k:
                return -1
            m = _plain(v, depth + 1, cap)
            if m < 0:
                return -1
            n += m + len(k)
            if n > cap:
                return -1
        return n
    if t is list:
        for v in obj:
            m = _plain(v, depth + 1, cap)
            if m < 0:
                return -1
            n += m
            if n > cap:
                return -1
        return n
    return -1


def _payload(value: dict[str, Any], where: str, budget: int) -> str:
    """Check and encode one payload dict. Flat dicts of ASCII text and ints (most events) are
    checked inline; anything else takes the full walk. Past ``budget`` it raises
    ``OverBudget`` before encoding; a large payload is encoded in slices."""
    if not value:
        return "{}"
    n = 0
    for k, v in value.items():
        if k.__class__ is not str or not k.isascii() or "\x00" in k:
            break
        tv = v.__class__
        if tv is str:
            if not v.isascii() or "\x00" in v:
                break
            n += len(v)
        elif tv is not int or not _INT_MIN <= v <= _INT_MAX:
            break
    else:
        if n > budget:
            raise OverBudget
        return _flat(value) if n <= SLICE else _sliced(value)
    n = _plain(value, 0, min(budget, SLICE))
    if n >= 0:
        return _flat(value)
    # counted no further than needed: past the budget, or past SLICE with no budget (a
    # circular value would count for ever; the walk below refuses it)
    n = cost(value, SLICE if budget == sys.maxsize else max(budget, SLICE))
    if n > budget:
        raise OverBudget
    big = check_json(value, where)
    text = _dumps(value) if n <= SLICE else _sliced(value)
    return text + EXACT_MARK if big else text


def encode_event(
    event: Event, max_bytes: int = DEFAULT_MAX_EVENT_BYTES, budget: int = sys.maxsize
) -> EncodedEvent:
    """Check and encode an event. ``budget`` caps the payload characters to encode in this
    call: a larger payload raises ``OverBudget`` first, for the caller to encode it in a
    thread (the event loop's share of a call stays short whatever the payload)."""
    if type(event) is not Event:
        raise ValidationError(f"expected an Event, got {type(event).__name__}")
    _recheck(event)
    kind = event.type
    if kind is EventType.HISTORY_REWOUND:
        check_rewind(event)
    data = _payload(event.data, "event.data", budget)
    metadata = _payload(event.metadata, "event.metadata", budget - len(data))
    n = len(data) + len(metadata)
    if n * 4 > max_bytes and (n > max_bytes or utf8_len(data) + utf8_len(metadata) > max_bytes):
        raise ValidationError(
            f"event {event.id!r}: payload is larger than the {max_bytes}-byte limit per event; "
            "store large blobs as artifacts and reference them by key",
            details={"limit": max_bytes},
        )
    return _new_row(
        EncodedEvent,
        (
            event.id,
            event.session_id,
            kind.value,
            event.run_id,
            (event.timestamp - EPOCH) // _MICROSECOND,
            data,
            metadata,
            event.schema_version,
            event.provider,
            event.correlation_id,
        ),
    )


_new_row = tuple.__new__  # EncodedEvent's own __new__ is a Python function; this is not
_MICROSECOND = timedelta(microseconds=1)


_TYPES: dict[str, EventType | CustomEventType] = {t.value: t for t in EventType}
_MAX_CACHED_TYPES = 4096


def _type_of(name: str) -> EventType | CustomEventType:
    """Stored type text to its value; custom types are interned so reads stay cheap."""
    found = _TYPES.get(name)
    if found is None:
        found = CustomEventType(name)
        if len(_TYPES) < _MAX_CACHED_TYPES:
            _TYPES[name] = found
    return found


def check_rewind(event: Event) -> None:
    """A rewind names the last visible sequence number; anything else would hide at random."""
    to = event.data.get("to_sequence")
    if type(to) is not int or to < 0:
        raise ValidationError(
            f"event {event.id!r}: a history_rewound event needs data.to_sequence, an int >= 0 "
            f"(the last sequence number that stays visible), got {to!r}",
            details={"field": "event.data.to_sequence"},
        )


def _recheck(event: Event) -> None:
    """Repeat the constructor's checks without its cost: values are frozen, but a caller can
    force a field with ``object.__setattr__``, and this is the last stop before a write."""
    if (
        (type(event.type) is not EventType and type(event.type) is not CustomEventType)
        or type(event.timestamp) is not datetime
        or event.timestamp.tzinfo is not UTC
        or type(event.schema_version) is not int
        or event.schema_version < 1
        or type(event.data) is not dict
        or type(event.metadata) is not dict
    ):
        Event.__post_init__(event)  # raises the constructor's error for the bad field
        if event.timestamp.tzinfo is not UTC or not isinstance(
            event.type, EventType | CustomEventType
        ):
            raise ValidationError("event fields were changed after construction")
    eid, sid = event.id, event.session_id
    if (
        eid.__class__ is not str
        or not 0 < len(eid) <= MAX_ID_BYTES
        or not eid.isascii()
        or "\x00" in eid
    ):
        check_id(eid, "event.id")
    if (
        sid.__class__ is not str
        or not 0 < len(sid) <= MAX_ID_BYTES
        or not sid.isascii()
        or "\x00" in sid
    ):
        check_id(sid, "event.session_id")
    run_id, provider, correlation = event.run_id, event.provider, event.correlation_id
    if (run_id is not None and not _plain_ref(run_id)) or (
        (provider is not None or correlation is not None)
        and not (
            (provider is None or _plain_ref(provider))
            and (correlation is None or _plain_ref(correlation))
        )
    ):
        Event.__post_init__(event)


def _plain_ref(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.__class__ is str
        and len(value) <= MAX_ID_BYTES
        and value.isascii()
        and "\x00" not in value
    )


def decode_event(row: EncodedEvent | tuple[Any, ...], sequence_number: int) -> Event:
    """Rebuild the stored form; also used for rows straight from a driver (same column order)."""
    kind = _TYPES.get(row[2]) or _type_of(row[2])
    return Event._trusted(
        row[0],
        kind,
        row[1],
        row[3],
        from_micros(row[4]),
        sequence_number,
        _loads(row[5]),
        _loads(row[6]),
        row[7],
        row[8],
        row[9],
    )


def decode_page(rows: Iterable[Sequence[Any]]) -> list[Event]:
    """``decode_event`` for driver rows with the sequence number last (at 10), in one loop:
    a 1,000-event read builds 1,000 events, and the calls per row were a third of its cost
    (issue 13). The same values as ``decode_event``, the same errors for damaged rows."""
    out: list[Event] = []
    append = out.append
    types, trusted, loads, fast_loads = _TYPES, Event._trusted, _loads, _orjson_loads
    from_ts, fast_until, utc = _from_timestamp, FAST_MICROS, UTC
    for r in rows:
        data, meta, us = r[5], r[6], r[4]
        if data == "{}":
            data = {}
        elif len(data) <= SLICE and data[-1:] != EXACT_MARK:
            try:
                data = fast_loads(data)
            except _OrjsonDecodeError:
                data = loads(data)
        else:
            data = loads(data)
        append(
            trusted(
                r[0],
                types.get(r[2]) or _type_of(r[2]),
                r[1],
                r[3],
                from_ts(us * 1e-6, utc) if 0 <= us < fast_until else from_micros(us),
                r[10],
                data,
                {} if meta == "{}" else loads(meta),
                r[7],
                r[8],
                r[9],
            )
        )
    return out


def decode_held(
    held: tuple[Any, ...], session_id: str, timestamp_us: int, sequence_number: int
) -> Event:
    """The in-memory store's compact row back to an event: ``(id, type, run_id, data)``, then
    ``metadata, schema_version, provider, correlation_id`` only when one of them is not the
    default (the session id, time and number are held beside it, not in it)."""
    kind = _TYPES.get(held[1]) or _type_of(held[1])
    if len(held) == 4:
        metadata, version, provider, correlation = {}, 1, None, None
    else:
        metadata, version, provider, correlation = _loads(held[4]), *held[5:8]
    return Event._trusted(
        held[0],
        kind,
        session_id,
        held[2],
        from_micros(timestamp_us),
        sequence_number,
        _loads(held[3]),
        metadata,
        version,
        provider,
        correlation,
    )


def encode_session(session: Session) -> str:
    if type(session) is not Session:
        raise ValidationError(f"expected a Session, got {type(session).__name__}")
    Session.__post_init__(session)
    return dumps(session.to_dict(), "session")


#: How many keys ``encode_session`` writes (all of them, always): a doc of exactly these is
#: what this package wrote.
_N_SESSION_KEYS = len(Session.__dataclass_fields__)
_SESSION_STATUSES: dict[str, SessionStatus] = {s.value: s for s in SessionStatus}
_from_iso = datetime.fromisoformat
_set_updated_at = Session.__dict__["updated_at"].__set__


def _plain_id(value: object) -> bool:
    """What ``check_id`` accepts without further work: short ASCII text, no NUL."""
    return (
        value.__class__ is str
        and 0 < len(value) <= MAX_ID_BYTES
        and value.isascii()
        and "\x00" not in value
    )


def _plain_tag(value: object) -> bool:
    return value.__class__ is str and value.isascii() and "\x00" not in value


def decode_session(doc: str, updated_us: int | None = None) -> Session:
    """Rebuild a stored session; ``updated_us`` is the ``updated_at`` activity has moved since
    the doc was saved (contract C5), when the backend keeps it apart.

    A doc ``encode_session`` wrote was fully checked on its way in, so the usual one (ASCII
    ids and tags, UTC times, exactly its ten keys) takes cheap shape checks instead of the
    constructor's: those were ~3/4 of decoding a session, paid by every session of a listing.
    Anything else (non-ASCII ids, another layout, a hand-edited doc) takes the validating
    path, which refuses or normalises it exactly as before.
    """
    data = _loads(doc)
    if data.__class__ is dict and len(data) == _N_SESSION_KEYS:
        try:  # all ten keys present, and no other (the length says so)
            sid, agent, status = data["id"], data["agent_id"], data["status"]
            parent, metadata, context, tags = (
                data["parent_session_id"],
                data["metadata"],
                data["context"],
                data["tags"],
            )
            created, updated, deleted = data["created_at"], data["updated_at"], data["deleted_at"]
            found = _SESSION_STATUSES[status] if status.__class__ is str else None
            if not (
                found is not None
                and _plain_id(sid)
                and _plain_id(agent)
                and (parent is None or _plain_id(parent))
                and metadata.__class__ is dict
                and context.__class__ is dict
                and tags.__class__ is list
                and (not tags or all(_plain_tag(t) for t in tags))
                and created.__class__ is str
                and updated.__class__ is str
                and (deleted is None or deleted.__class__ is str)
            ):
                raise KeyError
            created_at = _from_iso(created)
            updated_at = _from_iso(updated) if updated_us is None else from_micros(updated_us)
            deleted_at = None if deleted is None else _from_iso(deleted)
        except (KeyError, ValueError):
            pass  # the validating path says what is wrong
        else:
            if (
                created_at.tzinfo is UTC
                and updated_at.tzinfo is UTC
                and (deleted_at is None or deleted_at.tzinfo is UTC)
            ):
                return Session._trusted(
                    sid,
                    agent,
                    found,
                    parent,
                    metadata,
                    context,
                    tags,
                    created_at,
                    updated_at,
                    deleted_at,
                )
    session = Session.from_dict(data)
    if updated_us is not None:
        _set_updated_at(session, from_micros(updated_us))  # ours, just built
    return session


def encode_run(run: Run) -> str:
    if type(run) is not Run:
        raise ValidationError(f"expected a Run, got {type(run).__name__}")
    Run.__post_init__(run)
    return dumps(run.to_dict(), "run")


def decode_run(doc: str) -> Run:
    return Run.from_dict(_loads(doc))
