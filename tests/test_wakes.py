"""What a wake-up says about an append, and which waiting queries it can satisfy."""

from __future__ import annotations

from agent_session_store.base import EventQuery
from agent_session_store.wakes import Wake, loads, merge, session_of, wakes_of_rows


def _q(**kw: object) -> EventQuery:
    return EventQuery("s", **kw)  # type: ignore[arg-type]


def test_a_wake_rules_out_only_what_none_of_its_events_can_pass() -> None:
    w = Wake(5, 7, frozenset({"message_sent"}), frozenset({"r1", None}), 1_000)
    assert w.may_satisfy(_q())
    assert not w.may_satisfy(_q(type="tool_call_started"))
    assert w.may_satisfy(_q(type="message_sent"))
    assert not w.may_satisfy(_q(run_id="r2"))
    assert w.may_satisfy(_q(run_id="r1"))
    assert not w.may_satisfy(_q(after=7))
    assert w.may_satisfy(_q(after=6))
    assert not w.may_satisfy(_q(before=5))
    assert w.may_satisfy(_q(before=6))
    assert not w.may_satisfy(_q(since_us=1_001))
    assert w.may_satisfy(_q(since_us=1_000, desc=True, limit=1))
    # unknown fields rule out nothing
    assert Wake().may_satisfy(_q(type="x", run_id="y", after=10**9, before=1, since_us=10**18))


def test_wakes_of_rows_and_merge() -> None:
    got = wakes_of_rows([("a", "t1", None, 5, 3), ("a", "t2", "r", 9, 4), ("b", "t1", "r", 1, 1)])
    assert got["a"] == Wake(3, 4, frozenset({"t1", "t2"}), frozenset({None, "r"}), 9)
    assert got["b"] == Wake(1, 1, frozenset({"t1"}), frozenset({"r"}), 1)
    both = merge(got["a"], got["b"])
    assert both == Wake(1, 4, frozenset({"t1", "t2"}), frozenset({None, "r"}), 9)
    assert merge(got["a"], None) is None
    many = wakes_of_rows([("a", "t", f"r{i}", 0, i + 1) for i in range(40)])
    assert many["a"].runs is None  # too many to send: any run may match


def test_the_wire_form_round_trips_and_refuses_garbage() -> None:
    w = Wake(1, 2**62, frozenset({"a"}), frozenset({"r", None}), -(2**60))
    assert loads(w.dumps()) == w
    assert loads(Wake().dumps()) == Wake()
    # Lua spells numbers as strings and an empty list as {}
    assert loads('{"f":"3","l":"4","ts":"-5","t":["x"],"r":{},"n":true}') == Wake(
        3, 4, frozenset({"x"}), frozenset({None}), -5
    )
    for bad in ("1", "", "[]", '{"f":1}', '{"t":"x"}', '{"f":1.5,"l":2}', "{", '{"r":[1]}'):
        assert loads(bad) is None, bad
    assert session_of('{"s":"ses_1","f":1,"l":1}') == "ses_1"
    assert session_of("ses_1") is None
    assert session_of('{"s":3}') is None
