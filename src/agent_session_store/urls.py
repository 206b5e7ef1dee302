"""Opening stores by URL (docs/contract.md section 6).

Backends are imported only when their scheme is used, so ``memory://`` and ``sqlite://``
work without any extra installed, and a missing extra is reported by name. Each backend
class parses its own URL in a ``from_url`` classmethod; this module only routes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from .errors import DependencyNotAvailableError, StoreError, ValidationError, redact

if TYPE_CHECKING:
    from .base import SessionStoreBase
    from .composite import CompositeSessionStore
    from .ports import ArtifactStore

__all__ = [
    "missing_extra",
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


_EXAMPLES = {
    "session store": "memory://, sqlite:///relative.db, sqlite:////abs/path.db, "
    "postgresql://user@host:5432/db?schema=agents, redis://host:6379/0",
    "artifact store": "memory://, file:///abs/root, s3://bucket/prefix?endpoint_url=...",
}


def _scheme(url: object, kind: str, table: dict[str, tuple[str, str | None]]) -> str:
    if type(url) is not str or not url:
        got = "an empty string" if url == "" else f"{type(url).__name__} {url!r}"
        raise ValidationError(
            f"a {kind} URL is a non-empty str such as {_EXAMPLES.get(kind, 'scheme://...')}; "
            f"got {redact(got)}",
            details={"field": "url"},
        )
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
    except (ImportError, DependencyNotAvailableError) as exc:
        if extra is None:
            raise
        raise missing_extra(extra, f"the {scheme}:// backend", exc, scheme=scheme) from exc
    return getattr(module, attr)


def missing_extra(
    extra: str, what: str, exc: ImportError | StoreError, **details: str
) -> DependencyNotAvailableError:
    """The error for an optional driver that is not installed, with the command that fixes it
    both for an installed package and for a checkout of this repository."""
    missing = (exc.name if isinstance(exc, ImportError) else None) or _EXTRA_DRIVER.get(
        extra, extra
    )
    return DependencyNotAvailableError(
        f"{what} needs the {extra!r} extra ({missing} is not installed): "
        f"pip install 'agent-session-store[{extra}]', or from a checkout of the repository "
        f"pip install -e '.[{extra}]'",
        details={"extra": extra, "missing": missing, **details},
    )


_EXTRA_DRIVER = {"postgres": "asyncpg", "redis": "redis", "s3": "aiobotocore"}


def open_session_store(url: str, **options: Any) -> SessionStoreBase:
    """A session store for ``url``, not yet connected: use ``async with`` or ``await .open()``.

    Every backend implements the same contract (docs/contract.md); blocking code uses
    ``agent_session_store.sync.open_session_store`` instead.
    """
    cls = _load(_scheme(url, "session store", _SESSION_BACKENDS), _SESSION_BACKENDS)
    url, redaction = _redact_option(url)
    try:
        store = cast("SessionStoreBase", cls.from_url(url, **options))
    except StoreError:
        raise
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"bad session store URL {redact(url)!r}: {redact(str(exc))}"
        ) from None
    if redaction:
        from .redaction import RedactionConfig

        store.redaction = RedactionConfig()
    return store


def _redact_option(url: str) -> tuple[str, bool]:
    """``?redact=true`` turns on the default redaction for any backend (contract 9); it is
    taken off the URL here so no backend has to know it."""
    from urllib.parse import parse_qsl, urlencode

    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "redact" for k, _ in pairs):
        return url, False
    on = bool_option(dict(p for p in pairs if p[0] == "redact"), "redact")
    rest = urlencode([p for p in pairs if p[0] != "redact"])
    base = url.split("?", 1)[0]  # not urlunsplit: it folds sqlite://// into sqlite://
    return (f"{base}?{rest}" if rest else base), on


def open_artifact_store(url: str, **options: Any) -> ArtifactStore:
    """An artifact store for ``url``, not yet connected (docs/contract.md section 4)."""
    cls = _load(_scheme(url, "artifact store", _ARTIFACT_BACKENDS), _ARTIFACT_BACKENDS)
    try:
        return cast("ArtifactStore", cls.from_url(url, **options))
    except StoreError:
        raise
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"bad artifact store URL {redact(url)!r}: {redact(str(exc))}"
        ) from None


def open_store(session_url: str, artifact_url: str, **options: Any) -> CompositeSessionStore:
    """One composite handle over a session store and an artifact store (docs/contract.md
    section 5)."""
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
