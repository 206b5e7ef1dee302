"""Opening stores by URL (contract 6).

Backends are imported only when their scheme is used, so ``memory://`` and ``sqlite://``
work without any extra installed, and a missing extra is reported by name. Each backend
class parses its own URL in a ``from_url`` classmethod; this module only routes.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from .errors import DependencyNotAvailableError, StoreError, ValidationError, redact

__all__ = [
    "open_artifact_store",
    "open_session_store",
    "open_store",
    "register_artifact_backend",
    "register_session_backend",
]

# scheme -> ("module:Class", extra that provides its driver or None)
_SESSION_BACKENDS: dict[str, tuple[str, str | None]] = {
    "memory": ("agent_session_store.memory:InMemorySessionStore", None),
    "sqlite": ("agent_session_store.sqlite:SQLiteSessionStore", None),
    "postgresql": ("agent_session_store.postgres:PostgresSessionStore", "postgres"),
    "postgres": ("agent_session_store.postgres:PostgresSessionStore", "postgres"),
    "redis": ("agent_session_store.redis:RedisSessionStore", "redis"),
    "rediss": ("agent_session_store.redis:RedisSessionStore", "redis"),
    "redis+cluster": ("agent_session_store.redis:RedisSessionStore", "redis"),
}
_ARTIFACT_BACKENDS: dict[str, tuple[str, str | None]] = {
    "memory": ("agent_session_store.artifacts.memory:InMemoryArtifactStore", None),
    "file": ("agent_session_store.artifacts.files:FileArtifactStore", None),
    "s3": ("agent_session_store.artifacts.s3:S3ArtifactStore", "s3"),
}


def register_session_backend(scheme: str, target: str, extra: str | None = None) -> None:
    """Make ``open_session_store`` route ``scheme://`` to ``"package.module:Class"``."""
    _SESSION_BACKENDS[scheme.lower()] = (target, extra)


def register_artifact_backend(scheme: str, target: str, extra: str | None = None) -> None:
    _ARTIFACT_BACKENDS[scheme.lower()] = (target, extra)


def _scheme(url: object, kind: str, table: dict[str, tuple[str, str | None]]) -> str:
    if type(url) is not str or not url:
        raise ValidationError(f"{kind} URL must be a non-empty str, got {type(url).__name__}")
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ValidationError(f"malformed {kind} URL {redact(url)!r}: {exc}") from None
    if not scheme or "://" not in url:
        raise ValidationError(
            f"malformed {kind} URL {redact(url)!r}: expected scheme://..., "
            f"with a scheme among {', '.join(sorted(table))}"
        )
    if scheme not in table:
        raise ValidationError(
            f"unknown {kind} URL scheme {scheme!r}; known: {', '.join(sorted(table))}",
            details={"scheme": scheme},
        )
    return scheme


def _load(scheme: str, table: dict[str, tuple[str, str | None]]) -> Any:
    target, extra = table[scheme]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        raise DependencyNotAvailableError(
            f"the {scheme}:// backend needs the {extra!r} extra: "
            f"pip install 'agent-session-store[{extra}]' ({exc.name or exc} is missing)",
            details={"extra": extra, "scheme": scheme},
        ) from exc
    return getattr(module, attr)


def open_session_store(url: str, **options: Any) -> Any:
    """A session store for ``url``, not yet connected: use ``async with`` or ``await .open()``."""
    cls = _load(_scheme(url, "session store", _SESSION_BACKENDS), _SESSION_BACKENDS)
    try:
        return cls.from_url(url, **options)
    except StoreError:
        raise
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"bad session store URL {redact(url)!r}: {redact(str(exc))}"
        ) from None


def open_artifact_store(url: str, **options: Any) -> Any:
    cls = _load(_scheme(url, "artifact store", _ARTIFACT_BACKENDS), _ARTIFACT_BACKENDS)
    try:
        return cls.from_url(url, **options)
    except StoreError:
        raise
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"bad artifact store URL {redact(url)!r}: {redact(str(exc))}"
        ) from None


def open_store(session_url: str, artifact_url: str, **options: Any) -> Any:
    """One composite handle over a session store and an artifact store (contract 5)."""
    from .composite import CompositeSessionStore

    return CompositeSessionStore(
        open_session_store(session_url, **options), open_artifact_store(artifact_url), owns=True
    )


def query_options(url: str) -> dict[str, str]:
    """The ``?key=value`` options of a URL, for backends' ``from_url``."""
    from urllib.parse import parse_qsl

    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def number_options(
    opts: dict[str, str], into: dict[str, Any], kinds: dict[str, type[int] | type[float]]
) -> None:
    """Move numeric ``?name=value`` options into constructor keywords; a keyword the caller
    passed explicitly wins over the URL."""
    for name, kind in kinds.items():
        if name in opts:
            value = opts.pop(name)
            try:
                into.setdefault(name, kind(value))
            except ValueError:
                raise ValidationError(
                    f"URL option {name}={value!r} must be a number", details={"field": name}
                ) from None


def bool_option(options: dict[str, str], name: str, default: bool = False) -> bool:
    value = options.pop(name, None)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValidationError(f"URL option {name}={value!r} must be true or false")
