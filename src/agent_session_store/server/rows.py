"""Timeline rows as HTML, written directly rather than through a Jinja loop.

A session page holds up to a thousand rows and Jinja's per-row overhead dominated its render
time (issue 11's bar: 100 ms for 1,000 events). Every value taken from an event passes
through ``_e`` (markupsafe's escape, quotes included) or ``_u`` (URL-quoting) on its way in; the XSS
browser tests cover this file as they cover the templates.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from markupsafe import escape

from ..models import Event, iso
from .jsonenc import dumps
from .timeline import Item

try:  # the C escaper markupsafe's ``escape`` wraps: the same text, without a Markup object
    from markupsafe._speedups import _escape_inner as _escape_str
except ImportError:  # pragma: no cover - the pure-Python markupsafe

    def _escape_str(s: str, /) -> str:
        return str(escape(s))


__all__ = ["render_rows"]


def _e(value: object) -> str:
    """markupsafe's C escape (what the templates use): & < > " ' all become entities.
    Called straight, not through ``escape``: ~150 calls a row, and building a ``Markup``
    for each cost a third of a 1,000-event page's render."""
    return _escape_str(value if type(value) is str else str(value))


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value).decode()


def _clock(event: Event) -> tuple[str, str]:
    stamp = iso(event.timestamp)
    return stamp, stamp[11:23]


def _row(it: Item, base: str) -> str:
    event = it.event
    seq = it.seq
    classes = f"ev kind-{it.kind} fam-{_e(it.family)}"
    if it.error:
        classes += " error"
    if it.rewound:
        classes += " rewound"
    if it.role:
        classes += f" role-{_e(it.role)}"
    attrs = f' data-seq="{seq}" data-last-seq="{it.last_seq}" data-type="{_e(it.type)}"'
    if it.tool_call_id:
        attrs += f' data-tool-call-id="{_e(it.tool_call_id)}"'
    if it.kind == "rewind":
        attrs += f' data-to-sequence="{_e(event.data.get("to_sequence", ""))}"'
    stamp, clock = _clock(event)
    span = f"–{it.last_seq}" if len(it.seqs) > 1 else ""
    meta = [
        f'<a class="seq" href="#e{seq}">#{seq}{span}</a>',
        f'<time datetime="{stamp}">{clock}</time>',
        f'<span class="type">{_e(it.type)}</span>',
    ]
    if it.error:
        meta.append('<strong class="flag">error</strong>')
    if it.rewound:
        meta.append('<span class="flag rewound-flag">rewound</span>')
    if event.run_id:
        meta.append(f'<span class="run">run {_e(event.run_id)}</span>')
    parts = [f'<li id="e{seq}" class="{classes}"{attrs}>', '<div class="meta">', *meta, "</div>"]
    payload = "" if it.payload is None else _e(_compact(it.payload))
    if it.kind in ("message", "stream"):
        parts.append(
            f'<div class="bubble"><span class="role">{_e(it.role)}</span>'
            f'<p class="text">{_e(it.text)}</p></div>'
        )
    elif it.kind == "tool_call":
        if it.pair_seq:
            pair = f'<a class="pair result-link" href="#e{it.pair_seq}">result #{it.pair_seq} ↓</a>'
        else:
            pair = (
                '<a class="pair result-link pending" hidden>result</a>'
                '<span class="pending-note">waiting for result…</span>'
            )
        parts.append(
            f'<div class="tool"><span class="tool-name">{_e(it.tool)}</span>'
            f"(<code>{payload}</code>) {pair}</div>"
        )
    elif it.kind == "tool_result":
        if it.pair_seq:
            pair = f'<a class="pair call-link" href="#e{it.pair_seq}">call #{it.pair_seq} ↑</a>'
        else:
            pair = '<a class="pair call-link pending" hidden>call</a>'
        parts.append(
            f'<div class="tool"><span class="tool-name">{_e(it.tool)}</span> → '
            f"<code>{payload}</code> {pair}</div>"
        )
    else:
        parts.append(f'<div class="summary">{_e(it.text)}</div>')
    if event.data:
        # Compact JSON from the C encoder; app.js pretty-prints it when the row is opened.
        parts.append(
            '<details class="payload"><summary>data</summary>'
            f'<pre class="json">{_e(it.data_json)}</pre></details>'
        )
    key = event.data.get("artifact_key")
    if isinstance(key, str):
        href = f"{base}/artifacts/view?{urlencode({'key': key})}"
        parts.append(f'<a class="artifact-link" href="{_e(href)}">artifact {_e(key)}</a>')
    parts.append("</li>")
    return "".join(parts)


def render_rows(items: list[Item], base: str) -> str:
    return "\n".join(_row(it, base) for it in items)
