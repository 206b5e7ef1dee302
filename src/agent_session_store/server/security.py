"""The guard in front of every route: token check, write refusal, body limits, headers.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so it never buffers a streamed
response such as SSE or an artifact download.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "CSP", "Guard", "is_loopback", "token_matches"]

COOKIE = "ass_token"

#: Scripts and styles only from our own /static; no inline script, no plugins, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_PUBLIC = ("/static/", "/login")
# Percent-encoded path as sent: ids may hold "/" and the routes must see it as %2F.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time: the time taken does not tell how much of a guess was right."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _cookie(scope: Scope) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(COOKIE)
    return None if morsel is None else morsel.value


async def _json(
    send: Send, status: int, code: str, message: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *_HEADERS,
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        read_only: bool,
        max_body_bytes: int,
        max_artifact_bytes: int,
    ) -> None:
        self.app = app
        self.token = token
        self.read_only = read_only
        self.max_body_bytes = max_body_bytes
        self.max_artifact_bytes = max_artifact_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path")
        if raw:
            scope = dict(scope)
            scope["path"] = quote(raw.split(b"?", 1)[0], safe=_PATH_SAFE)
        root = scope.get("root_path", "")
        path: str = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
        method = scope["method"]
        is_api = path.startswith("/api/")

        if method in _WRITE_METHODS and path != "/login":
            if self.read_only or self.token is None:
                await _json(
                    send,
                    403,
                    "forbidden",
                    "this server is read-only (writes need read_only=False and a token)",
                )
                return
            # Writes need the header: a cookie alone would let other sites forge writes.
            if not token_matches(_bearer(scope), self.token):
                await _json(
                    send,
                    401,
                    "unauthorized",
                    "a valid bearer token is required",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            limit = self.max_artifact_bytes if path == "/api/artifacts" else self.max_body_bytes
            length = _header(scope, b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await _json(send, 413, "payload_too_large", f"request body over {limit} bytes")
                return
            scope.setdefault("state", {})
            scope["state"]["body_limit"] = limit
        elif (
            self.token is not None
            and not path.startswith(_PUBLIC)
            and not token_matches(_bearer(scope), self.token)
            and not token_matches(_cookie(scope), self.token)
        ):
            if is_api or method != "GET":
                await _json(
                    send,
                    401,
                    "unauthorized",
                    "a valid bearer token is required",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            location = f"{root}/login".encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", location), (b"content-length", b"0"), *_HEADERS],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in _HEADERS if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
