"""Query-string parsing: every bad value is a ``validation_error`` naming its parameter.

The store validates again; parsing here only turns text into the Python types the store
takes, so the HTTP API rejects exactly what the library rejects, with the same codes.
"""

from __future__ import annotations

from datetime import datetime

from starlette.datastructures import QueryParams

from ..errors import ValidationError
from ..models import parse_iso

__all__ = ["Params"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Params:
    """Typed access to a request's query parameters."""

    __slots__ = ("_q",)

    def __init__(self, query: QueryParams) -> None:
        self._q = query

    def text(self, name: str) -> str | None:
        value = self._q.get(name)
        return None if value is None or value == "" else value

    def texts(self, name: str) -> list[str] | None:
        """A repeated parameter (``?tag=a&tag=b``) or a comma list (``?status=a,b``)."""
        values: list[str] = []
        for raw in self._q.getlist(name):
            values.extend(v for v in raw.split(",") if v)
        return values or None

    def integer(
        self, name: str, *, minimum: int = 0, maximum: int | None = None, default: int | None = None
    ) -> int | None:
        raw = self._q.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw, 10)
        except ValueError:
            raise ValidationError(
                f"{name} must be an integer, got {raw!r}", details={"field": name}
            ) from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise ValidationError(f"{name} must be {bound}, got {value}", details={"field": name})
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self._q.get(name)
        if raw is None:
            return default
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValidationError(f"{name} must be true or false, got {raw!r}", details={"field": name})

    def when(self, name: str) -> datetime | None:
        """An ISO-8601 instant; it must carry a zone (the store refuses naive datetimes)."""
        raw = self.text(name)
        if raw is None:
            return None
        if " " in raw and "+" not in raw:  # an unencoded "+00:00" arrives as " 00:00"
            head, _, tail = raw.rpartition(" ")
            raw = f"{head}+{tail}"
        return parse_iso(raw, name)

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        if raw not in allowed:
            raise ValidationError(
                f"{name} must be one of {', '.join(allowed)}, got {raw!r}", details={"field": name}
            )
        return raw
