"""Questions across sessions: pages and cursors, stats, usage and cost (contract 7).

Everything here is backend-independent and written once: the validated query values a
backend receives, cursor encoding, the facts a backend keeps per run so it can aggregate
without decoding documents, the pricing table, and turning a backend's per-group run
aggregates into the summaries callers see.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from .errors import InvalidCursorError, ValidationError
from .models import Run, from_micros

__all__ = [
    "DEFAULT_PRICING",
    "CostSummary",
    "EventSearch",
    "Page",
    "RunFacts",
    "RunFilter",
    "RunGroup",
    "RunSearch",
    "SessionSearch",
    "SessionStats",
    "UsageSummary",
    "decode_cursor",
    "encode_cursor",
    "run_facts",
]

T = TypeVar("T")

#: (sort value, id): the keyset position after an item. Sort values are ints (µs, tokens, seq).
Position = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page: ``cursor`` names the position after the last item (None when empty)."""

    items: list[T]
    cursor: str | None
    total_count: int | None = None


# ---------------------------------------------------------------- validated queries


@dataclass(frozen=True, slots=True)
class SessionSearch:
    agent_id: str | None = None
    statuses: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    created_after_us: int | None = None
    created_before_us: int | None = None
    updated_after_us: int | None = None
    updated_before_us: int | None = None
    include_deleted: bool = False
    order_by: str = "updated_at_desc"

    def matches(
        self,
        *,
        agent_id: str,
        status: str,
        tags: Iterable[str] | frozenset[str],
        created_us: int,
        updated_us: int,
        deleted_us: int | None,
    ) -> bool:
        """The filter as the stores that scan in Python (memory, Redis) apply it."""
        return (
            (self.include_deleted or deleted_us is None)
            and (self.agent_id is None or agent_id == self.agent_id)
            and (self.statuses is None or status in self.statuses)
            and all(t in tags for t in self.tags)
            and within(created_us, self.created_after_us, self.created_before_us)
            and within(updated_us, self.updated_after_us, self.updated_before_us)
        )


@dataclass(frozen=True, slots=True)
class RunSearch:
    session_id: str | None = None
    agent_id: str | None = None
    provider: str | None = None
    statuses: tuple[str, ...] | None = None
    started_after_us: int | None = None
    started_before_us: int | None = None
    min_tokens: int | None = None
    order_by: str = "started_at_desc"

    def matches(
        self,
        *,
        session_id: str,
        agent_id: str | None,
        status: str,
        started_us: int,
        facts: RunFacts,
    ) -> bool:
        """The filter as the stores that scan in Python apply it."""
        return (
            (self.session_id is None or session_id == self.session_id)
            and (self.agent_id is None or agent_id == self.agent_id)
            and (self.provider is None or facts.provider == self.provider)
            and (self.statuses is None or status in self.statuses)
            and within(started_us, self.started_after_us, self.started_before_us)
            and (self.min_tokens is None or facts.total_tokens >= self.min_tokens)
        )

    def position(self, run_id: str, started_us: int, facts: RunFacts) -> Position:
        by_tokens = self.order_by == "token_usage_desc"
        return ((facts.total_tokens if by_tokens else started_us), run_id)


@dataclass(frozen=True, slots=True)
class EventSearch:
    session_ids: tuple[str, ...] | None = None
    run_ids: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None
    providers: tuple[str, ...] | None = None
    since_us: int | None = None
    until_us: int | None = None
    correlation_id: str | None = None
    order_by: str = "timestamp_asc"

    def matches(
        self,
        *,
        run_id: str | None,
        type: str,
        provider: str | None,
        timestamp_us: int,
        correlation_id: str | None,
    ) -> bool:
        """The filter, but for ``session_ids``, as the stores that scan in Python apply it."""
        return (
            (self.run_ids is None or run_id in self.run_ids)
            and (self.types is None or type in self.types)
            and (self.providers is None or provider in self.providers)
            and within(timestamp_us, self.since_us, self.until_us)
            and (self.correlation_id is None or correlation_id == self.correlation_id)
        )


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a usage or cost summary (or a session's stats) adds up."""

    session_id: str | None = None
    agent_id: str | None = None
    provider: str | None = None
    since_us: int | None = None
    until_us: int | None = None

    def matches(self, *, agent_id: str | None, provider: str | None, started_us: int) -> bool:
        """The filter, but for ``session_id``, as the stores that scan in Python apply it."""
        return (
            (self.agent_id is None or agent_id == self.agent_id)
            and (self.provider is None or provider == self.provider)
            and within(started_us, self.since_us, self.until_us)
        )


SESSION_ORDERS = ("updated_at_desc", "created_at_asc", "created_at_desc")
RUN_ORDERS = ("started_at_desc", "started_at_asc", "token_usage_desc")
EVENT_ORDERS = ("timestamp_asc", "timestamp_desc", "sequence_asc")


def descending(order_by: str) -> bool:
    return order_by.endswith("_desc")


def within(value: int, low: int | None, high: int | None) -> bool:
    """``low <= value <= high``, either bound optional (contract bounds are inclusive)."""
    return (low is None or value >= low) and (high is None or value <= high)


def page_sorted(
    keyed: list[tuple[Position, Any]], order_by: str, after: Position | None, limit: int
) -> list[Any]:
    """Sort (position, item) pairs by the ordering and cut the page after ``after``: the
    keyset page of a store that scans in Python (memory, Redis)."""
    desc = descending(order_by)
    keyed.sort(key=lambda pair: pair[0], reverse=desc)
    if after is not None:
        keyed = [p for p in keyed if (p[0] < after if desc else p[0] > after)]
    return [item for _, item in keyed[:limit]]


# ---------------------------------------------------------------- cursors


def encode_cursor(method: str, order_by: str, position: Position) -> str:
    """Opaque to callers; a position bound to its method and ordering (C4)."""
    raw = json.dumps([method, order_by, position[0], position[1]], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: object, method: str, order_by: str) -> Position | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not cursor:
        raise InvalidCursorError("a cursor is the non-empty string a previous page returned")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursorError("the cursor cannot be decoded") from None
    if (
        not isinstance(fields, list)
        or len(fields) != 4
        or not isinstance(fields[0], str)
        or not isinstance(fields[1], str)
        or type(fields[2]) is not int
        or not isinstance(fields[3], str)
    ):
        raise InvalidCursorError("the cursor has been changed: its fields are not a position")
    if fields[0] != method or fields[1] != order_by:
        raise InvalidCursorError(
            f"the cursor was made by {fields[0]}(order_by={fields[1]!r}), not by "
            f"{method}(order_by={order_by!r})"
        )
    return fields[2], fields[3]


# ---------------------------------------------------------------- run facts


def _count(value: object) -> int:
    """Token counts as stored: numbers count (floats truncated), anything else counts 0."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return int(value)
    return 0


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What a backend keeps beside a run's document so it can filter and add up runs."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float | None
    provider: str | None
    model: str | None


def run_facts(run: Run) -> RunFacts:
    usage = run.token_usage
    inp = _count(usage.get("input_tokens"))
    out = _count(usage.get("output_tokens"))
    total = usage.get("total_tokens")
    tot = _count(total) if type(total) in (int, float) else inp + out  # C6
    model = run.provider_metadata.get("model")
    cost = run.cost_usd if run.cost_usd is None or math.isfinite(run.cost_usd) else None
    return RunFacts(inp, out, tot, cost, run.provider, model if isinstance(model, str) else None)


@dataclass(frozen=True, slots=True)
class RunGroup:
    """Runs a backend added up, grouped by (provider, model, status)."""

    provider: str | None
    model: str | None
    status: str
    run_count: int
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    #: Runs with ``cost_usd`` set, and the sum of those costs.
    costed_runs: int = 0
    cost_usd: float = 0.0
    #: Tokens of the runs without ``cost_usd``: what pricing prices.
    uncosted_input_tokens: int = 0
    uncosted_output_tokens: int = 0


def group_runs(runs: Iterable[tuple[str, RunFacts]]) -> list[RunGroup]:
    """Add up (status, facts) pairs the way a SQL ``GROUP BY`` would: for scanning backends."""
    acc: dict[tuple[str | None, str | None, str], list[Any]] = {}
    for status, f in runs:
        row = acc.setdefault((f.provider, f.model, status), [0, 0, 0, 0, 0, 0.0, 0, 0])
        row[0] += 1
        row[1] += f.input_tokens
        row[2] += f.output_tokens
        row[3] += f.total_tokens
        if f.cost_usd is not None:
            row[4] += 1
            row[5] += f.cost_usd
        else:
            row[6] += f.input_tokens
            row[7] += f.output_tokens
    return [RunGroup(p, m, s, *row) for (p, m, s), row in sorted(acc.items(), key=_group_key)]


def _group_key(item: tuple[tuple[str | None, str | None, str], Any]) -> tuple[str, str, str]:
    (p, m, s), _ = item
    return (p or "", m or "", s)


# ---------------------------------------------------------------- summaries


@dataclass(frozen=True, slots=True)
class SessionStats:
    session_id: str
    event_count: int
    run_count: int
    token_totals: dict[str, int]
    cost_usd: float | None
    providers_used: list[str]
    first_event_at: datetime | None
    last_event_at: datetime | None
    status_counts: dict[str, int]
    latest_sequence: int


@dataclass(frozen=True, slots=True)
class UsageSummary:
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_tokens: int = 0
    run_count: int = 0
    by_provider: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CostSummary:
    total_cost_usd: float = 0.0
    run_count: int = 0
    by_provider: dict[str, dict[str, float | int]] = field(default_factory=dict)
    by_model: dict[str, dict[str, float | int]] = field(default_factory=dict)
    unmapped_runs: int = 0


def session_stats(
    session_id: str,
    groups: list[RunGroup],
    events: tuple[int, int | None, int | None],
    latest_sequence: int,
) -> SessionStats:
    count, first_us, last_us = events
    status_counts: dict[str, int] = {}
    for g in groups:
        status_counts[g.status] = status_counts.get(g.status, 0) + g.run_count
    costed = sum(g.costed_runs for g in groups)
    return SessionStats(
        session_id=session_id,
        event_count=count,
        run_count=sum(g.run_count for g in groups),
        token_totals={
            "input_tokens": sum(g.input_tokens for g in groups),
            "output_tokens": sum(g.output_tokens for g in groups),
            "total_tokens": sum(g.total_tokens for g in groups),
        },
        cost_usd=sum(g.cost_usd for g in groups) if costed else None,
        providers_used=sorted({g.provider for g in groups if g.provider is not None}),
        first_event_at=None if first_us is None else from_micros(first_us),
        last_event_at=None if last_us is None else from_micros(last_us),
        status_counts=dict(sorted(status_counts.items())),
        latest_sequence=latest_sequence,
    )


def usage_summary(groups: list[RunGroup]) -> UsageSummary:
    by_provider: dict[str, dict[str, int]] = {}
    for g in groups:
        row = by_provider.setdefault(
            g.provider or "unknown",
            {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "run_count": 0},
        )
        row["input_tokens"] += g.input_tokens
        row["output_tokens"] += g.output_tokens
        row["total_tokens"] += g.total_tokens
        row["run_count"] += g.run_count
    return UsageSummary(
        total_input_tokens=sum(g.input_tokens for g in groups),
        total_output_tokens=sum(g.output_tokens for g in groups),
        total_tokens=sum(g.total_tokens for g in groups),
        run_count=sum(g.run_count for g in groups),
        by_provider=dict(sorted(by_provider.items())),
    )


# ---------------------------------------------------------------- pricing

#: USD per million tokens, by provider and model (C7). ``pricing=`` merges over it.
DEFAULT_PRICING: dict[str, dict[str, dict[str, float]]] = {
    "anthropic": {
        "claude-opus-4": {"input": 15.0, "output": 75.0},
        "claude-sonnet-4": {"input": 3.0, "output": 15.0},
        "claude-3-7-sonnet": {"input": 3.0, "output": 15.0},
        "claude-3-5-sonnet": {"input": 3.0, "output": 15.0},
        "claude-3-5-haiku": {"input": 0.8, "output": 4.0},
        "claude-haiku-4": {"input": 1.0, "output": 5.0},
    },
    "openai": {
        "gpt-4o": {"input": 2.5, "output": 10.0},
        "gpt-4o-mini": {"input": 0.15, "output": 0.6},
        "gpt-4.1": {"input": 2.0, "output": 8.0},
        "gpt-4.1-mini": {"input": 0.4, "output": 1.6},
        "o3": {"input": 2.0, "output": 8.0},
        "o4-mini": {"input": 1.1, "output": 4.4},
    },
    "google": {
        "gemini-2.5-pro": {"input": 1.25, "output": 10.0},
        "gemini-2.5-flash": {"input": 0.3, "output": 2.5},
    },
}


def merge_pricing(pricing: object) -> dict[str, dict[str, dict[str, float]]]:
    """The default table with the caller's entries over it; malformed tables are refused."""
    merged = {p: dict(models) for p, models in DEFAULT_PRICING.items()}
    if pricing is None:
        return merged
    if not isinstance(pricing, Mapping):
        raise ValidationError("pricing must be {provider: {model: {input, output}}}")
    for provider, models in pricing.items():
        if not isinstance(provider, str) or not isinstance(models, Mapping):
            raise ValidationError("pricing must be {provider: {model: {input, output}}}")
        for model, price in models.items():
            if (
                not isinstance(model, str)
                or not isinstance(price, Mapping)
                or set(price) != {"input", "output"}
                or not all(
                    type(v) in (int, float) and math.isfinite(v) and v >= 0 for v in price.values()
                )
            ):
                raise ValidationError(
                    f"pricing[{provider!r}][{model!r}] must be {{'input': usd_per_million, "
                    "'output': usd_per_million}} with non-negative numbers"
                )
            merged.setdefault(provider, {})[model] = {
                "input": float(price["input"]),
                "output": float(price["output"]),
            }
    return merged


def cost_summary(groups: list[RunGroup], pricing: object = None) -> CostSummary:
    table = merge_pricing(pricing)
    total = 0.0
    unmapped = 0
    by_provider: dict[str, dict[str, float | int]] = {}
    by_model: dict[str, dict[str, float | int]] = {}
    for g in groups:
        cost = g.cost_usd
        uncosted = g.run_count - g.costed_runs
        price = table.get(g.provider or "", {}).get(g.model or "") if g.model else None
        priced_runs = g.costed_runs
        if uncosted:
            if price is None:
                unmapped += uncosted
            else:
                cost += (
                    g.uncosted_input_tokens * price["input"]
                    + g.uncosted_output_tokens * price["output"]
                ) / 1_000_000
                priced_runs += uncosted
        if priced_runs == 0:
            continue
        total += cost
        prov = by_provider.setdefault(g.provider or "unknown", {"cost_usd": 0.0, "run_count": 0})
        prov["cost_usd"] += cost
        prov["run_count"] += priced_runs
        model = by_model.setdefault(
            g.model or "unknown", {"cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0}
        )
        model["cost_usd"] += cost
        if price is None:  # only costed runs counted here: their tokens are all of them
            model["input_tokens"] += g.input_tokens - g.uncosted_input_tokens
            model["output_tokens"] += g.output_tokens - g.uncosted_output_tokens
        else:
            model["input_tokens"] += g.input_tokens
            model["output_tokens"] += g.output_tokens
    return CostSummary(
        total_cost_usd=total,
        run_count=sum(g.run_count for g in groups),
        by_provider=dict(sorted(by_provider.items())),
        by_model=dict(sorted(by_model.items())),
        unmapped_runs=unmapped,
    )
