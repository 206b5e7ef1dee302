"""Key and channel names (docs/redis.md, "Key layout").

Every key of one session shares the hash tag ``{<escaped session id>}``, so it lives in one
cluster slot and one Lua script can change the whole session atomically.
"""

from __future__ import annotations

import secrets

__all__ = ["SESSION_KEYS", "Keys", "escape"]

# The per-session keys, in the order every Lua script expects them.
SESSION_KEYS = ("seq", "ev", "ids", "x", "s", "runs", "del", "q", "z", "t")
SEQ, EV, IDS, INDEX, RECORD, RUNS, FENCE, SPARSE, ZONES, TYPES = range(10)


def escape(text: str) -> str:
    """Hash-tag-safe form of an id: injective, and never contains a brace."""
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


class Keys:
    """The names of one application's keys (one prefix)."""

    __slots__ = ("event_index", "gc", "list_index", "prefix", "run_index", "touched_index")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        # list_sessions: all, by status, by agent, by both (lex sorted sets); meta, docs
        self.list_index = [
            f"{prefix}:{{%i}}:{n}" for n in ("all", "st", "ag", "sa", "meta", "docs")
        ]
        # single node only: session id -> touched (C5), read by list_sessions with the docs
        self.touched_index = f"{prefix}:{{%i}}:touched"
        # single node only: event id -> session id, run id -> session id
        self.event_index = f"{prefix}:{{%g}}:eid"
        self.run_index = f"{prefix}:{{%g}}:rid"
        # single node only: garbage key -> session id, deletes whose clean-up is not done
        self.gc = f"{prefix}:{{%g}}:gc"

    def tag(self, session_id: str) -> str:
        return f"{self.prefix}:{{{escape(session_id)}}}"

    def session(self, session_id: str) -> list[str]:
        """The session's keys in ``SESSION_KEYS`` order."""
        t = self.tag(session_id)
        return [f"{t}:{n}" for n in SESSION_KEYS]

    def seq(self, session_id: str) -> str:
        """The session's counter key (``session(...)[SEQ]``)."""
        return f"{self.tag(session_id)}:{SESSION_KEYS[SEQ]}"

    def garbage(self, session_id: str) -> str:
        """Single node: a deleted session's ids hash, renamed, until its clean-up is done."""
        return f"{self.tag(session_id)}:gc:{secrets.token_hex(8)}"

    def channel(self, session_id: str) -> str:
        return f"{self.tag(session_id)}:n"

    def claim(self, event_id: str) -> str:
        """Cluster: the event id's claim (the winning row), in a slot of its own."""
        return f"{self.prefix}:e:{{{escape(event_id)}}}"

    def run(self, run_id: str) -> str:
        """Cluster: run id -> session id, in a slot of its own."""
        return f"{self.prefix}:r:{{{escape(run_id)}}}"
