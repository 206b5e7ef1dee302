"""``python -m agent_session_store``: the same as the ``agent-session-store`` command."""

from .cli import main

raise SystemExit(main())
