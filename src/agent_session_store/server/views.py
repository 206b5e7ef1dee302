"""The inspector's HTML pages, rendered on the server with Jinja2 (autoescaping on).

No value from the store is ever written into HTML unescaped, nor into a URL unquoted, nor
into a script: pages pass what the small ``static/app.js`` needs through ``data-``
attributes, and the Content-Security-Policy forbids inline script anyway.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..errors import NotFoundError, SessionNotFoundError, StoreError, ValidationError
from ..models import EventType, Run, Session, SessionStatus, iso, utcnow
from . import queries
from .api import ctx, read_body
from .params import Params
from .rows import render_rows
from .security import COOKIE, token_matches
from .timeline import build_chart, build_items, hidden_ranges

__all__ = ["PREVIEW_BYTES"]

PREVIEW_BYTES = 256 * 1024
_DIFF_SUFFIXES = (".diff", ".patch")


def _base(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _helpers(request: Request) -> dict[str, Any]:
    base = _base(request)

    def session_url(session_id: str, **params: Any) -> str:
        url = f"{base}/sessions/{quote(session_id, safe='')}"
        query = {k: v for k, v in params.items() if v is not None}
        return url + ("?" + urlencode(query) if query else "")

    def api_url(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v is not None}
        return f"{base}/api{path}" + ("?" + urlencode(query) if query else "")

    def url(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v is not None}
        return f"{base}{path}" + ("?" + urlencode(query) if query else "")

    def q(value: str) -> str:
        return quote(value, safe="")

    return {
        "base": base,
        "session_url": session_url,
        "api_url": api_url,
        "url": url,
        "q": q,
        "iso": iso,
        "clock": lambda dt: dt.strftime("%H:%M:%S.%f")[:-3],
        "stamp": lambda dt: dt.strftime("%Y-%m-%d %H:%M:%S"),
        "pretty": lambda v: json.dumps(v, ensure_ascii=False, indent=2),
        "compact": lambda v: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False),
    }


def render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    env = ctx(request).templates
    html = env.get_template(name).render(**_helpers(request), **values)
    return HTMLResponse(html, status_code=status)


# ---------------------------------------------------------------- list


async def sessions_page(request: Request) -> Response:
    c = ctx(request)
    p = Params(request.query_params)
    jump = p.text("q")
    if jump is not None:
        try:
            found = await c.store.get_session(jump)
        except (SessionNotFoundError, ValidationError):
            found = None
        if found is not None:
            return RedirectResponse(_helpers(request)["session_url"](found.id), status_code=303)
    status = p.text("status")
    query = queries.has_query(c.store)
    order = p.choice("order_by", queries.SESSION_ORDERS, queries.default_session_order(c.store))
    filters = {"agent_id": p.text("agent_id"), "status": status, "tag": p.text("tag")}
    limit = p.integer("limit", minimum=1, maximum=500, default=50) or 50
    page = await queries.search_sessions(
        c.store,
        agent_id=filters["agent_id"],
        status=[status] if status else None,
        tags=[filters["tag"]] if filters["tag"] else None,
        order_by=order,
        limit=limit,
        cursor=p.text("cursor"),
    )
    return render(
        request,
        "sessions.html",
        title="Sessions",
        sessions=page.items,
        cursor=page.cursor if len(page.items) == limit else None,
        filters=filters,
        order_by=order,
        orders=queries.SESSION_ORDERS if query else ("created_at_asc",),
        statuses=[s.value for s in SessionStatus],
        not_found=jump,
        live_since=iso(utcnow()) if query else None,
        limit=limit,
    )


# ---------------------------------------------------------------- one session


def _duration(run: Run) -> str:
    if run.ended_at is None:
        return "running" if run.status.value == "running" else ""
    seconds = (run.ended_at - run.started_at).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


async def _timeline(
    request: Request, session_id: str, *, after: int | None, before: int | None
) -> tuple[list[Any], int, int]:
    """Items of one page and the page's first and last sequence numbers."""
    c = ctx(request)
    n = c.page_events
    if after is not None:
        events = await c.store.get_events(session_id, after=after, limit=n)
    else:
        events = await c.store.get_events(session_id, before=before, limit=n, order="desc")
        events.sort(key=lambda e: e.sequence_number or 0)
    rewinds = await c.store.get_events(
        session_id, type=EventType.HISTORY_REWOUND, order="desc", limit=1000
    )
    items = build_items(events, hidden_ranges(rewinds))
    first = events[0].sequence_number or 0 if events else 0
    last = events[-1].sequence_number or 0 if events else 0
    return items, first, last


async def session_page(request: Request) -> Response:
    c = ctx(request)
    sid = request.path_params["session_id"]
    p = Params(request.query_params)
    no_record = False
    try:
        session = await c.store.get_session(sid)
        stats = await queries.session_stats(c.store, sid)
    except SessionNotFoundError:
        # Events may name a session that has no record (contract 3.8.8): show them anyway.
        if await c.store.get_latest_sequence(sid) == 0:
            raise
        no_record = True
        session = Session(id=sid, agent_id="(unknown)")
        stats = await queries.stats_from_log(c.store, sid)
    runs = await c.store.list_runs(sid, limit=200)
    after, before = p.integer("after"), p.integer("before", minimum=1)
    items, first, last = await _timeline(request, sid, after=after, before=before)
    latest = int(stats.get("latest_sequence") or 0)
    artifacts: list[str] = []
    if c.artifacts is not None:
        artifacts = (await c.artifacts.list_keys(f"sessions/{sid}/", limit=50)).keys
    return render(
        request,
        "session.html",
        title=f"Session {sid}",
        session=session,
        stats=stats,
        runs=runs,
        duration=_duration,
        chart=build_chart(runs),
        rows=Markup(render_rows(items, _base(request))),  # escaped in rows.py
        has_items=bool(items),
        first_seq=first,
        last_seq=last,
        latest=latest,
        live=last >= latest or not items,
        has_older=first > 1,
        artifacts=artifacts,
        no_record=no_record,
    )


async def timeline_fragment(request: Request) -> Response:
    """Rows after ``after``, as the same HTML the page has; the live script inserts them."""
    sid = request.path_params["session_id"]
    after = Params(request.query_params).integer("after", default=0) or 0
    items, _, last = await _timeline(request, sid, after=after, before=None)
    return HTMLResponse(
        render_rows(items, _base(request)), headers={"x-last-sequence": str(last or after)}
    )


# ---------------------------------------------------------------- artifacts


def _looks_diff(key: str, text: str) -> bool:
    return key.endswith(_DIFF_SUFFIXES) or text.startswith(("diff --git", "--- ", "Index: "))


async def artifacts_page(request: Request) -> Response:
    c = ctx(request)
    if c.artifacts is None:
        return render(
            request,
            "error.html",
            404,
            title="No artifacts",
            code="not_supported",
            message="this server has no artifact store (start it with --artifacts URL)",
        )
    p = Params(request.query_params)
    prefix = p.text("prefix") or ""
    page = await c.artifacts.list_keys(prefix, limit=100, cursor=p.text("cursor"))
    parts = prefix.split("/")
    crumbs = [("/".join(parts[: i + 1]) + "/", part) for i, part in enumerate(parts[:-1])]
    return render(
        request,
        "artifacts.html",
        title="Artifacts",
        prefix=prefix,
        keys=page.keys,
        cursor=page.next_cursor,
        crumbs=crumbs,
    )


async def artifact_page(request: Request) -> Response:
    c = ctx(request)
    if c.artifacts is None:
        raise NotFoundError("this server has no artifact store")
    key = Params(request.query_params).text("key")
    if key is None:
        raise ValidationError("key is required", details={"field": "key"})
    stat = await c.artifacts.stat(key)
    text: str | None = None
    truncated = False
    if stat.size <= PREVIEW_BYTES:
        raw = await c.artifacts.get(key)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    else:
        truncated = True
    lines: list[tuple[str, str]] = []
    if text is not None and _looks_diff(key, text):
        for line in text.splitlines():
            kind = (
                "add"
                if line.startswith("+")
                else "del"
                if line.startswith("-")
                else "hunk"
                if line.startswith("@@")
                else ""
            )
            if line.startswith(("+++", "---")):
                kind = "file"
            lines.append((kind, line))
    parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    return render(
        request,
        "artifact.html",
        title=f"Artifact {key}",
        key=key,
        stat=stat,
        text=text,
        diff=lines,
        truncated=truncated,
        parent=parent,
    )


# ---------------------------------------------------------------- login


async def login_page(request: Request) -> Response:
    return render(request, "login.html", title="Sign in", failed=False)


async def login_submit(request: Request) -> Response:
    from urllib.parse import parse_qs

    token = ctx(request).token
    request.scope.setdefault("state", {})["body_limit"] = 4096
    fields = parse_qs((await read_body(request)).decode("utf-8", "replace"))
    given = (fields.get("token") or [""])[0]
    if token is None or not token_matches(given, token):
        return render(request, "login.html", 401, title="Sign in", failed=True)
    response = RedirectResponse(f"{_base(request)}/", status_code=303)
    response.set_cookie(COOKIE, given, httponly=True, samesite="strict", path=_base(request) or "/")
    return response


def error_page(request: Request, err: StoreError, status: int) -> HTMLResponse:
    return render(request, "error.html", status, title="Error", code=err.code, message=err.message)
