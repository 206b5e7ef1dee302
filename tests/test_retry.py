"""The shared bounded retry helper: every loop that tries again stops within its budget."""

from __future__ import annotations

import time

import pytest

from agent_session_store.retry import Retry, RetryPolicy, retrying, retrying_sync


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_attempts_bound_counts_the_first_try() -> None:
    retry = Retry(RetryPolicy(attempts=3, first_delay=0.01, max_delay=1, jitter=0))
    assert [retry.next_pause(), retry.next_pause(), retry.next_pause()] == [0.01, 0.02, None]
    assert retry.attempt == 3


def test_pauses_grow_to_the_cap_with_jitter_below_the_nominal_delay() -> None:
    draws = iter([0.0, 1.0, 0.5, 0.0, 0.0])
    retry = Retry(
        RetryPolicy(attempts=10, first_delay=0.01, max_delay=0.03, jitter=0.5),
        rng=lambda: next(draws),
    )
    pauses = [retry.next_pause() for _ in range(5)]
    assert pauses == pytest.approx([0.01, 0.01, 0.0225, 0.03, 0.03])


def test_timeout_bound_clips_the_last_pause_and_then_stops() -> None:
    clock = _Clock()
    retry = Retry(RetryPolicy(timeout=1.0, first_delay=0.4, max_delay=0.4, jitter=0), clock=clock)
    assert retry.next_pause() == pytest.approx(0.4)
    clock.now += 0.8
    assert retry.next_pause() == pytest.approx(0.2)  # never past the deadline
    clock.now += 0.2
    assert retry.next_pause() is None
    retry.reset()
    assert retry.next_pause() == pytest.approx(0.4) and retry.attempt == 2


def test_policy_refuses_nonsense() -> None:
    for bad in (
        {"attempts": 0},
        {"attempts": True},
        {"timeout": -1},
        {"first_delay": 1, "max_delay": 0.5},
        {"jitter": 2},
    ):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


async def test_retrying_gives_up_within_its_deadline_with_the_last_error() -> None:
    calls = 0

    async def always_busy() -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"busy {calls}")

    started = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        await retrying(
            always_busy, RetryPolicy(timeout=0.2, max_delay=0.02), retryable=lambda e: True
        )
    assert time.monotonic() - started < 1.0
    assert calls > 3 and info.value.args == (f"busy {calls}",)


async def test_retrying_stops_at_once_on_an_error_it_may_not_retry() -> None:
    calls = 0

    async def fails() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("transient")
        raise KeyError("permanent")

    with pytest.raises(KeyError):
        await retrying(
            fails,
            RetryPolicy(attempts=10, first_delay=0),
            retryable=lambda e: isinstance(e, ConnectionError),
        )
    assert calls == 2


def test_retrying_sync_returns_the_first_success() -> None:
    results: list[int | OSError] = [OSError("a"), OSError("b"), 42]

    def work() -> int:
        r = results.pop(0)
        if isinstance(r, OSError):
            raise r
        return r

    policy = RetryPolicy(attempts=3, first_delay=0)
    assert retrying_sync(work, policy, retryable=lambda e: isinstance(e, OSError)) == 42
