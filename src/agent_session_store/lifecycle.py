"""``async with store:`` for every store: open on the way in, close on the way out."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class OpenClose:
    """Gives a class with ``open()`` and ``close()`` the async context manager of contract 1."""

    async def open(self) -> Self:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
