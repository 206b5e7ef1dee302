"""Regenerate docs/img/inspector-*.png: the demo session (tests/server/seed.py) in the
inspector, shot by Debian's chromium. Run: .venv/bin/python scripts/inspector-screenshots.py"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "server")]

from seed import seed_demo  # noqa: E402

from agent_session_store import Session, open_artifact_store, open_session_store  # noqa: E402
from conftest import CHROMIUM, CHROMIUM_ARGS, LiveServer  # noqa: E402


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/demo.db?auto_migrate=true"
        arts = f"file://{tmp}/artifacts"

        async def seed() -> None:
            async with open_session_store(url) as store, open_artifact_store(arts) as a:
                await seed_demo(store, a)
                others = [("research-bot", "completed", ["web"]), ("triage", "failed", ["ops"]),
                          ("code-helper", "paused", ["coding"]), ("planner", "pending", [])]
                for i, (agent, status, tags) in enumerate(others):
                    await store.save_session(
                        Session(id=f"ses_{agent.replace('-', '')}{i}", agent_id=agent,
                                status=status, tags=tags)  # type: ignore[arg-type]
                    )

        asyncio.run(seed())
        server = LiveServer(url, arts).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 960, "height": 420})
                page.goto(server.base + "/")
                page.screenshot(path=str(ROOT / "docs/img/inspector-list.png"))
                page.set_viewport_size({"width": 960, "height": 1000})
                page.goto(server.base + "/sessions/ses_demo")
                page.locator("#e6 a.result-link").click()  # highlights the paired result
                page.evaluate("document.getElementById('e3').scrollIntoView()")
                page.screenshot(path=str(ROOT / "docs/img/inspector-session.png"))
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
