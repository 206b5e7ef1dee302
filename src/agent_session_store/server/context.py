"""What every route of one app shares."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from ..ports import ArtifactStore, EventsJSON, SessionStore
from .streams import StreamHub

__all__ = ["Context"]


@dataclass(frozen=True, slots=True)
class Context:
    store: SessionStore
    artifacts: ArtifactStore | None
    hub: StreamHub
    read_only: bool
    token: str | None
    templates: jinja2.Environment
    #: Events on one timeline page; older ones are a link away.
    page_events: int = 1000
    #: The store, when it can hand over a page of events already as the API's JSON.
    events_json: EventsJSON | None = None
