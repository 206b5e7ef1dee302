"""What every benchmark module reports, and the helpers they share."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# The servers: BENCH_* first, then what scripts/ensure-services.sh chose (.services/env,
# exported by `make bench`), then the machine's own.
PG_DSN = (
    os.environ.get("BENCH_PG")
    or os.environ.get("BENCH_POSTGRES_DSN")
    or os.environ.get("ASS_TEST_PG_DSN")
    or "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = (
    os.environ.get("BENCH_REDIS")
    or os.environ.get("ASS_TEST_REDIS_URL")
    or "redis://127.0.0.1:6379/0"
)


@dataclass
class Row:
    """One measured case. ``raw`` is the plain driver doing the same work in the same run."""

    backend: str
    case: str
    ours: float
    unit: str
    raw: float | None = None
    higher_is_better: bool = True
    bar: str = ""  # the bar, e.g. ">= 0.5 x raw" or "< 5 ms"
    passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """ours/raw for rates, raw/ours for costs: above 1 always means we are faster."""
        if self.raw is None or self.raw == 0 or self.ours == 0:
            return None
        return self.ours / self.raw if self.higher_is_better else self.raw / self.ours

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio}


def check_ratio(row: Row, minimum: float) -> Row:
    row.bar = f">= {minimum} x raw"
    row.passed = row.ratio is not None and row.ratio >= minimum
    return row


def check_max(row: Row, maximum: float, label: str) -> Row:
    row.bar = label
    row.passed = row.ours <= maximum
    return row


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


async def best_of(repeats: int, work: Callable[[], Awaitable[Any]]) -> float:
    """The fastest of several timed runs of ``work`` (seconds): the least disturbed by noise."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await work()
        times.append(time.perf_counter() - start)
    return min(times)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


async def drop_backend_data(name: str, tag: str) -> None:
    """Drop what a server-side store wrote under ``tag`` (its schema / key prefix)."""
    if name == "postgres":
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
        finally:
            await conn.close()
    elif name == "redis":
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        async with client:
            keys = [k async for k in client.scan_iter(match=f"{tag}*", count=5000)]
            for i in range(0, len(keys), 5000):
                await client.delete(*keys[i : i + 5000])
