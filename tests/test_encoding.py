"""The fast and the sliced encoding paths (issue 13): same bytes as json, same refusals, and
large work kept off the event loop."""

from __future__ import annotations

import json
import math
import random
import struct
import threading
from typing import Any

import orjson
import pytest

from agent_session_store import Event, EventType, InMemorySessionStore, StoreError
from agent_session_store.base import LOOP_BUDGET
from agent_session_store.codec import (
    EXACT_MARK,
    SLICE,
    _dumps,
    _loads,
    _sliced,
    check_json,
    decode_event,
    decode_page,
    dumps,
    encode_event,
    reencodes_same,
)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def ev(data: dict[str, Any]) -> Event:
    return Event(type=EventType.MESSAGE_SENT, session_id="s", data=data)


def test_flat_payloads_encode_exactly_as_json() -> None:
    """The orjson path must write the bytes json writes, every ASCII character included."""
    ascii_chars = "".join(chr(c) for c in range(1, 128))
    cases: list[dict[str, Any]] = [
        {"role": "assistant", "content": ascii_chars},
        {ascii_chars: ascii_chars[::-1], "n": 0},
        {"big": 2**63 - 1, "small": -(2**63), "u64": 2**64 - 1},
        {"k": "x" * (SLICE + 7), "q": '"\\' * 100},
    ]
    for data in cases:
        row = encode_event(ev(data))
        assert row.data == _json(data)
        assert _loads(row.data) == data


def test_nested_plain_payloads_skip_the_walk_and_encode_exactly_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An adapter's payload (an item or a checkpoint inside a dict) of ASCII text, 64-bit
    ints, bools and None is written by orjson without the full walk, byte for byte what json
    writes; anything else in it (a float, non-ASCII text or key, a big int, deep nesting) still
    takes the walk."""
    from agent_session_store import codec

    walked: list[Any] = []
    walk = codec.check_json

    def counted(value: Any, where: str) -> bool:
        walked.append(value)
        return walk(value, where)

    monkeypatch.setattr(codec, "check_json", counted)
    ascii_chars = "".join(chr(c) for c in range(1, 128))
    plain: list[dict[str, Any]] = [
        {"item": {"role": "user", "content": ascii_chars, ascii_chars: [ascii_chars]}},
        {"v": {"a": [1, -(2**63), 2**64 - 1, True, False, None, [], {}], "b": {"c": {"d": 1}}}},
    ]
    for data in plain:
        row = encode_event(ev(data))
        assert row.data == _json(data)
        assert _loads(row.data) == data
    assert walked == []
    deep: dict[str, Any] = {"x": 1}
    for _ in range(10):
        deep = {"d": deep}
    others: list[dict[str, Any]] = [
        {"item": {"f": 1.5}},
        {"item": {"s": "é"}},
        {"item": [2**64]},
        {"item": {"clé": 1}},
        deep,
    ]
    for data in others:
        text = encode_event(ev(data)).data
        assert text.rstrip(EXACT_MARK) == _json(data)
    assert len(walked) == len(others)


def test_ints_past_64_bits_come_back_exact() -> None:
    """orjson 3.13 reads an int past 64 bits as a float (2**64 + 1 -> 1.8446744073709552e19):
    a text holding one is written with a trailing space, and read by json. Not powers of two,
    which a float holds exactly."""
    cases: list[dict[str, Any]] = [
        {"huge": 2**64 + 1, "neg": -(2**63) - 1},  # flat
        {"l": [1, {"n": 10**30 + 7}], "s": "é"},  # nested, non-ASCII: the walk
        {"k": "x" * (SLICE + 7), "n": 2**70 + 3},  # large: the sliced writer and reader
        {"edge": 2**64 - 1, "low": -(2**63)},  # still within: no mark
    ]
    for data in cases:
        text = encode_event(ev(data)).data
        assert text.rstrip(EXACT_MARK) == _json(data)
        assert text.endswith(EXACT_MARK) == ("edge" not in data)
        got = _loads(text)
        assert got == data and repr(got) == repr(data)
    state = {"n": 2**80 + 1}
    doc = dumps(state, "state")
    assert doc.endswith(EXACT_MARK) and repr(_loads(doc)) == repr(state)
    assert _loads('{"a":1} ') == {"a": 1}
    with pytest.raises(ValueError):
        _loads('{"a":1}x\\ud800')  # text after the value: corrupt, on the fallback reader too


def _samples() -> list[Any]:
    big = SLICE * 3 + 5
    return [
        {"s": "x" * big},
        {"s": ('a"b\\c\n\x01é😀\u2028' * (big // 10))},
        {"s": "\\" * big},  # escapes all the way, cut between pairs
        {"l": ["y" * 100] * (big // 100)},
        {"l": [1, 2.5, None, True, "z" * big, {"k": "w" * big}, [], {}]},
        {"k" * big: {"nested": ["é" * big]}},
        {"deep": [[["x" * (big // 3)]]] * 3},
    ]


def test_large_payloads_encode_and_decode_exactly_as_json() -> None:
    for value in _samples():
        check_json(value, "data")
        text = _dumps(value)
        assert _sliced(value) == text
        assert _loads(text) == json.loads(text) == value
        # rows written elsewhere: escapes everywhere (pairs as two escapes), or jsonb's spacing
        for other in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
            assert _loads(other) == json.loads(other)


def test_large_texts_that_are_not_json_are_refused() -> None:
    pad = "x" * (SLICE * 2)
    for bad in (
        '{"a":"' + pad + "\x01" + '"}',  # a raw control character
        '{"a":"' + pad + '"',  # unterminated
        '{"a":"' + pad + '" 1}',
        '["' + pad + '",]',
        '{"a":"' + pad + '\\q"}',
        '["' + pad + '"] x',
    ):
        with pytest.raises(json.JSONDecodeError):
            _loads(bad)


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (math.nan, "NaN"),
        (b"bytes", "bytes"),
        ({1: "x"}, "key 1"),
        ("\x00", "NUL"),
        ("\ud800", "surrogate"),
    ],
)
def test_large_payloads_keep_every_refusal(bad: Any, what: str) -> None:
    """The same refusal, with the same message, whether the payload is small or large."""
    small = {"a": [bad]}
    large = {"pad": "x" * (SLICE * 4), "a": [bad]}
    with pytest.raises(StoreError) as e_small:
        encode_event(ev(small))
    with pytest.raises(StoreError) as e_large:
        encode_event(ev(large))
    assert e_small.value.code == e_large.value.code == "validation_error"
    assert e_small.value.message == e_large.value.message
    assert e_small.value.details == e_large.value.details


def test_large_payload_over_the_size_limit_is_refused() -> None:
    with pytest.raises(StoreError) as err:
        encode_event(ev({"s": "é" * (SLICE * 4)}), max_bytes=SLICE * 4)
    assert "limit" in err.value.message


class _Probe(dict[str, Any]):
    """A payload dict that notes which thread reads it."""

    threads: list[threading.Thread]

    def items(self) -> Any:
        self.threads.append(threading.current_thread())
        return super().items()


def _probe(content: dict[str, Any]) -> _Probe:
    p = _Probe(content)
    p.threads = []
    return p


async def test_a_large_batch_is_encoded_off_the_event_loop() -> None:
    """Past the loop's budget, the rest of a batch is checked and encoded in a thread."""
    loop_thread = threading.current_thread()
    count = LOOP_BUDGET // 300 + 10
    events = [ev({"content": "c" * 250}) for _ in range(count)]
    probe = _probe({"k": "v"})
    events.append(ev({"x": probe}))
    async with InMemorySessionStore() as store:
        stored = await store.append_events(events)
    assert len(stored) == count + 1 and stored[-1].data == {"x": {"k": "v"}}
    assert probe.threads and loop_thread not in probe.threads


async def test_a_large_payload_is_encoded_off_the_event_loop() -> None:
    loop_thread = threading.current_thread()
    probe = _probe({"s": "x" * (LOOP_BUDGET + 1)})
    async with InMemorySessionStore() as store:
        stored = await store.append_event_with_sequence(ev({"x": probe}))
    assert stored.data == {"x": {"s": "x" * (LOOP_BUDGET + 1)}}
    assert any(t is not loop_thread for t in probe.threads)


def test_small_texts_decode_exactly_as_json() -> None:
    """The orjson reading gives json's values: floats to the bit, big ints, odd escapes."""
    rng = random.Random(7)
    floats = [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(3000)]
    texts = [_json({"f": [f for f in floats if math.isfinite(f)]})]
    texts += [
        '{"n":[0,-0,-0.0,1e5,1E400,-1e-400,5e-324,18446744073709551616,-9223372036854775809]}',
        '{"s":"\\ud800 \\udc00 \\ud83d\\ude00 \\u0000 \\/ \\b\\f\\n\\r\\t"}',
        '{"a": {"b" : [1 , 2]},\n "c": null, "d": true, "e": false}',
        '{"k":"x","k":"y"}',
    ]
    for text in texts:
        assert repr(_loads(text)) == repr(json.loads(text))


def test_from_micros_is_exact_on_both_paths() -> None:
    """The float path (below FAST_MICROS) must give what the exact timedelta sum gives, for
    every microsecond: checked at the edges, across each second and at random."""
    from datetime import UTC, datetime, timedelta

    from agent_session_store.models import EPOCH, FAST_MICROS, from_micros, to_micros

    rng = random.Random(11)
    values = [0, 1, 999_999, 1_000_000, FAST_MICROS - 1, FAST_MICROS, FAST_MICROS + 1, -1]
    values += [
        s * 1_000_000 + us for s in (1_733_270_400, 2**32 - 1) for us in range(0, 10**6, 997)
    ]
    values += [rng.randrange(0, FAST_MICROS) for _ in range(100_000)]
    values += [
        to_micros(datetime(1, 1, 1, tzinfo=UTC)),
        to_micros(datetime.max.replace(tzinfo=UTC)),
    ]
    for v in values:
        got = from_micros(v)
        assert got == EPOCH + timedelta(microseconds=v) and got.tzinfo is UTC, v
        assert to_micros(got) == v


def test_decode_page_equals_decode_event() -> None:
    """The bulk decoder and the one-row one give the same events, field for field, on every
    path: empty and large payloads, big ints, escapes orjson refuses, custom types, times
    outside the fast range, the optional columns set."""
    from agent_session_store.models import FAST_MICROS

    rows: list[tuple[Any, ...]] = []
    payloads = [
        "{}",
        '{"a":1}',
        encode_event(ev({"n": 2**70 + 3})).data,  # EXACT_MARK
        encode_event(ev({"k": "x" * (SLICE + 7)})).data,  # past SLICE
        '{"s":"\\ud800"}',
        '{"s":"\ud800"}',  # a lone surrogate escape: orjson refuses, json reads
    ]
    times = [0, 1_733_270_400_123_456, FAST_MICROS - 1, FAST_MICROS, -5]
    for i, data in enumerate(payloads):
        for j, us in enumerate(times):
            rows.append(
                (
                    f"e{i}_{j}",
                    "s",
                    "message_sent" if j % 2 else "acme.custom_step",
                    None if j % 2 else "r1",
                    us,
                    data,
                    payloads[(i + j) % len(payloads)],
                    1 + j,
                    None if i % 2 else "openai",
                    None if j % 3 else "c9",
                    i * 10 + j + 1,
                )
            )
    fields = Event.__slots__
    want = [[getattr(decode_event(r, r[10]), f) for f in fields] for r in rows]
    got = [[getattr(e, f) for f in fields] for e in decode_page(rows)]
    assert repr(got) == repr(want)
    assert decode_page(iter(rows[:3]))[2].id == rows[2][0]  # any iterable (a cursor)
    with pytest.raises(ValueError):
        decode_page([(*rows[0][:5], '{"a":1}x', *rows[0][6:])])  # damaged: refused alike


# ---------------------------------------------------------------- session records


def _session_doc(**changes: Any) -> str:
    from agent_session_store import Session, SessionStatus
    from agent_session_store.codec import encode_session

    base = Session(
        id="adk/s/app/u/1",
        agent_id="adk/app/u",
        status=SessionStatus.ACTIVE,
        parent_session_id="p",
        metadata={"adk": {"sequence": 3, "last_update_time": 1.5}},
        context={"state": {"n": 1, "t": "é"}},
        tags=["a", "b"],
    )
    doc = json.loads(encode_session(base))
    doc.update(changes)
    return json.dumps(doc)


def test_trusted_session_decoding_equals_the_validating_one() -> None:
    """The shape-checked fast decoder builds exactly what ``Session.from_dict`` builds."""
    from agent_session_store import Session
    from agent_session_store.codec import decode_session
    from agent_session_store.models import from_micros, to_micros

    changes: dict[str, Any]
    for changes in (
        {},
        {"parent_session_id": None, "tags": []},
        {"deleted_at": "2026-01-02T03:04:05.000006Z", "status": "completed"},
        {"metadata": {}, "context": {}},
    ):
        doc = _session_doc(**changes)
        expected = Session.from_dict(json.loads(doc))
        got = decode_session(doc)
        assert got == expected and type(got) is Session
        assert got.created_at.tzinfo is expected.created_at.tzinfo
        moved = to_micros(expected.updated_at) + 7
        touched = decode_session(doc, moved)
        assert touched == expected.replace(updated_at=from_micros(moved))


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"status": "nope"}, "invalid_status"),
        ({"id": ""}, "validation_error"),
        ({"id": "a\x00b"}, "validation_error"),
        ({"agent_id": 5}, "validation_error"),
        ({"tags": ["ok", 3]}, "validation_error"),
        ({"tags": ["a\x00"]}, "validation_error"),
        ({"metadata": [1]}, "validation_error"),
        ({"created_at": "yesterday"}, "validation_error"),
        ({"created_at": "2026-01-02T03:04:05"}, "validation_error"),  # naive
    ],
)
def test_session_docs_of_another_shape_take_the_validating_path(
    changes: dict[str, Any], code: str
) -> None:
    """Anything but the exact shape ``encode_session`` writes is checked in full: a bad doc
    raises the constructor's typed error instead of becoming a broken Session."""
    from agent_session_store.codec import decode_session

    with pytest.raises(StoreError) as caught:
        decode_session(_session_doc(**changes))
    assert caught.value.code == code


def test_session_docs_with_other_keys_or_zones_are_normalised() -> None:
    """An extra key or a non-UTC time is not our layout: the validating path reads it (UTC)."""
    from datetime import UTC

    from agent_session_store import Session
    from agent_session_store.codec import decode_session

    shifted = decode_session(_session_doc(created_at="2026-01-02T05:04:05.000000+02:00"))
    assert shifted.created_at.tzinfo is UTC and shifted.created_at.hour == 3
    extra = _session_doc(extra="x")
    assert decode_session(extra) == Session.from_dict(json.loads(extra))


def test_orjson_writes_what_json_wrote_but_float_exponents() -> None:
    """What ``reencodes_same`` relies on: every string, and every float without an exponent,
    comes out of orjson as json wrote it (payloads are stored as json's text)."""
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert orjson.dumps(text).decode() == _json(text)
    rng = random.Random(11)
    floats = [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20000)
    ]
    floats += [10.0**k for k in range(-30, 30)] + [0.0, -0.0, 5e-324, 1.7976931348623157e308]
    floats += [rng.uniform(-1e6, 1e6) for _ in range(20000)]
    exponents = 0
    for x in floats:
        if not math.isfinite(x):
            continue
        written = _json({"x": x})
        if "e" in written:
            exponents += 1
            assert not reencodes_same(written)
        else:
            assert orjson.dumps({"x": x}).decode() == written, written
            assert reencodes_same(written)
    assert exponents > 1000


@pytest.mark.parametrize(
    ("text", "same"),
    [
        ('{"a":"x","b":[1,-2,3.5]}', True),
        ('{"a":1e-05}', False),
        ('{"a":1.5e+20}', False),
        ('{"a":"e-mail, 3e-5"}', False),  # a look-alike in a string: only a "maybe not"
        ('{"a":"e-mail","b":-1}', True),
        ('{"a":"\\u00e9"}', False),  # an escape orjson would not write
        ('{"a":"back\\\\u slash"}', True),  # an escaped backslash, then a "u"
        ('{"a":"\\\\\\u0001"}', False),
        ('{"a":"\\n\\"q\\""}', True),
    ],
)
def test_reencodes_same(text: str, same: bool) -> None:
    assert reencodes_same(text) is same
    if same:
        assert orjson.dumps(orjson.loads(text)).decode() == text
