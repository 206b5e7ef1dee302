"""Redaction (contract 9): every default category, the options, the limits."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agent_session_store import CustomEventType, Event, EventType, StoreError
from agent_session_store.redaction import (
    DEFAULT_CATEGORIES,
    NEVER_REDACTED,
    RedactionConfig,
    redact_event,
)

# One sample per default category, each inside ordinary text.
SAMPLES: dict[str, str] = {
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_key": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "gcp_api_key": "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "anthropic_key": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
    "openai_key": "sk-proj-abcdefghijklmnopqrstuvwx",
    "openai_legacy_key": "sk-" + "a1" * 24,
    "github_pat": "ghp_" + "A" * 36,
    "github_oauth": "gho_" + "b" * 36,
    "github_app": "ghs_" + "c" * 36,
    "github_refresh": "ghr_" + "d" * 36,
    "github_fine_pat": "github_pat_" + "e1" * 15,
    "gitlab_token": "glpat-" + "f" * 20,
    "jwt_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    "bearer_token": "Bearer abcdefghijklmnopqrstuvwxyz0123",
    "password": "password=hunter2",
    "api_key_generic": "api_key: 12345-abcde",
    "secret_key": "SECRET_KEY=xyz",
    "access_token": "access_token=tok123",
    "auth_token": "authToken: zzz",
    "connection_string": "postgresql://admin:pw@db.internal:5432/prod",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----",
    "env_secret": "DATABASE_URL = anything-here",
}


def msg(content: Any, **kw: Any) -> Event:
    return Event(type=EventType.MESSAGE_SENT, session_id="s", data={"content": content}, **kw)


def test_there_are_22_default_categories_each_with_a_sample() -> None:
    assert list(SAMPLES) == list(DEFAULT_CATEGORIES)


@pytest.mark.parametrize("category", DEFAULT_CATEGORIES)
def test_each_default_category(category: str) -> None:
    secret = SAMPLES[category]
    out = redact_event(msg(f"before {secret} after"), RedactionConfig())
    assert out.count >= 1 and out.fields == ["content"]
    text = out.event.data["content"]
    assert secret not in text and text.startswith("before ") and "[REDACTED]" in text
    assert out.event.metadata["redacted"] == out.count
    categorized = redact_event(msg(secret), RedactionConfig(replacement="categorized"))
    assert f"[REDACTED:{category}]" in categorized.event.data["content"]


def test_clean_text_is_left_alone_and_unmarked() -> None:
    event = msg("an ordinary answer about apis, tokens of thanks and https links")
    out = redact_event(event, RedactionConfig())
    assert out.event is event and out.count == 0 and "redacted" not in out.event.metadata


def test_never_redacted_types_and_disabled_config() -> None:
    assert len(NEVER_REDACTED) == 14
    for name in NEVER_REDACTED:
        event = Event(type=EventType(name), session_id="s", data={"content": SAMPLES["password"]})
        assert redact_event(event, RedactionConfig()).event is event
    assert redact_event(msg(SAMPLES["password"]), RedactionConfig(enabled=False)).count == 0
    custom = Event(
        type=CustomEventType("myapp.note"), session_id="s", data={"x": SAMPLES["password"]}
    )
    assert redact_event(custom, RedactionConfig()).count == 1


def test_deep_scan_and_depth_limit() -> None:
    nested: Any = SAMPLES["password"]
    for _ in range(11):  # data is depth 0: the string's container is at depth 10
        nested = {"k": nested}
    deep = redact_event(
        Event(type=EventType.TOOL_CALL_COMPLETED, session_id="s", data=nested), RedactionConfig()
    )
    assert deep.count == 1
    deeper = {"k": nested}  # now at depth 11: out of reach
    out = redact_event(
        Event(type=EventType.TOOL_CALL_COMPLETED, session_id="s", data=deeper), RedactionConfig()
    )
    assert out.count == 0
    in_list = redact_event(msg([["x", SAMPLES["github_pat"]], 5, None]), RedactionConfig())
    assert in_list.event.data["content"] == [["x", "[REDACTED]"], 5, None]


def test_shallow_scan_only_the_types_fields() -> None:
    event = Event(
        type=EventType.TOOL_CALL_COMPLETED,
        session_id="s",
        data={"tool_output": {"env": SAMPLES["password"]}, "other": SAMPLES["password"]},
    )
    out = redact_event(event, RedactionConfig(deep_scan=False))
    assert out.event.data == {"tool_output": {"env": "[REDACTED]"}, "other": SAMPLES["password"]}
    assert out.fields == ["tool_output"]


def test_metadata_only_when_asked() -> None:
    event = msg("hi", metadata={"note": SAMPLES["password"]})
    assert redact_event(event, RedactionConfig()).count == 0
    out = redact_event(event, RedactionConfig(scan_metadata=True))
    assert out.event.metadata == {"note": "[REDACTED]", "redacted": 1}
    assert event.metadata == {"note": SAMPLES["password"]}  # the input is not changed


def test_user_patterns_added_or_replacing_in_order() -> None:
    config = RedactionConfig(
        patterns=[re.compile(r"ACME-\d+"), ("ticket", r"T#\d+")], replacement="categorized"
    )
    out = redact_event(msg("ACME-42 T#7 password=x"), config)
    assert out.event.data["content"] == "[REDACTED:custom] [REDACTED:ticket] [REDACTED:password]"
    assert out.count == 3
    only = RedactionConfig(patterns=[r"ACME-\d+"], replace_defaults=True)
    assert only.categories == ["custom"]
    kept = redact_event(msg("ACME-1 password=x"), only).event.data["content"]
    assert kept == "[REDACTED] password=x"
    chained = RedactionConfig(patterns=[r"\[REDACTED\]"], replacement="<gone\\1>")
    assert redact_event(msg("password=x"), chained).event.data["content"] == "<gone\\1>"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"enabled": 1},
        {"patterns": "x"},
        {"patterns": [b"x"]},
        {"patterns": ["("]},
        {"patterns": [("", "x")]},
        {"replacement": None},
        {"replace_defaults": True},
        {"deep_scan": "yes"},
    ],
)
def test_bad_configs_are_validation_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(StoreError) as info:
        RedactionConfig(**kwargs)
    assert info.value.code == "validation_error"


@pytest.mark.parametrize("url", ["memory://?redact=true", "sqlite:///{tmp}/r.db?redact=1"])
async def test_redact_in_the_url_turns_on_the_defaults(url: str, tmp_path: Any) -> None:
    from agent_session_store import open_session_store

    async with open_session_store(url.format(tmp=tmp_path)) as store:
        assert store.redaction == RedactionConfig()
        stored = await store.append_event_with_sequence(msg(SAMPLES["github_pat"]))
        assert stored.data == {"content": "[REDACTED]"}
    async with open_session_store("memory://?redact=false") as plain:
        assert plain.redaction is None
    with pytest.raises(StoreError) as info:
        open_session_store("memory://?redact=maybe")
    assert info.value.code == "validation_error"
