"""Keeping a store bounded: the retention policy and the maintenance report (contract 8).

Nothing runs on a timer inside the library: callers (or the CLI's ``maintain``) call
``run_maintenance`` when they choose, with a policy value validated when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError
from .models import EventType, to_event_type, to_session_status

__all__ = ["PROTECTED_TYPES", "MaintenanceReport", "RetentionPolicy"]

#: Never pruned, in either pass (contract 8.2, C1, C9).
PROTECTED_TYPES: frozenset[str] = frozenset(
    t.value
    for t in (
        EventType.SESSION_CREATED,
        EventType.RUN_STARTED,
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.ERROR_OCCURRED,
        EventType.HISTORY_REWOUND,
    )
)


def _limit(value: object, name: str) -> None:
    if value is not None and (type(value) is not int or value < 1):
        raise ValidationError(
            f"RetentionPolicy.{name} must be a positive int or None, got {value!r}",
            details={"field": name},
        )


def _names(value: object, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | frozenset | set):
        raise ValidationError(
            f"RetentionPolicy.{name} must be a list of str", details={"field": name}
        )
    for item in value:
        if not isinstance(item, str) or not item:
            raise ValidationError(
                f"RetentionPolicy.{name} must hold non-empty str", details={"field": name}
            )
    return tuple(value)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long sessions live and how many events each keeps; None means "no limit"."""

    max_completed_session_age_days: int | None = 90
    hard_delete_after_days: int | None = 30
    max_events_per_session: int | None = None
    exempt_statuses: tuple[str, ...] = ("active", "paused")
    exempt_tags: tuple[str, ...] = ("pinned",)
    prune_event_types_first: tuple[str, ...] = ("message_streamed", "token_usage_updated")
    batch_size: int = 100

    def __post_init__(self) -> None:
        _limit(self.max_completed_session_age_days, "max_completed_session_age_days")
        _limit(self.hard_delete_after_days, "hard_delete_after_days")
        _limit(self.max_events_per_session, "max_events_per_session")
        if type(self.batch_size) is not int or self.batch_size < 1:
            raise ValidationError(
                "RetentionPolicy.batch_size must be a positive int", details={"field": "batch_size"}
            )
        statuses = _names(self.exempt_statuses, "exempt_statuses")
        object.__setattr__(
            self, "exempt_statuses", tuple(to_session_status(s).value for s in statuses)
        )
        object.__setattr__(self, "exempt_tags", _names(self.exempt_tags, "exempt_tags"))
        first = _names(self.prune_event_types_first, "prune_event_types_first")
        object.__setattr__(
            self, "prune_event_types_first", tuple(to_event_type(t).value for t in first)
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetentionPolicy:
        """From a parsed policy file (the CLI's ``--policy-file policy.toml``)."""
        if not isinstance(data, dict):
            raise ValidationError("a retention policy is a table of settings")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(
                f"unknown retention setting(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**data)


@dataclass(slots=True)
class MaintenanceReport:
    """What ``run_maintenance`` did, or with ``dry_run`` would do, step by step."""

    sessions_soft_deleted: int = 0
    sessions_hard_deleted: int = 0
    events_pruned: int = 0
    artifacts_deleted: int = 0
    duration_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False
