"""The inspector in a real browser: Debian's chromium driven by Playwright (no download).

Screenshots of the list and the session page are saved in the test's tmp directory."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_session_store import open_artifact_store, open_session_store

from .conftest import CHROMIUM_ARGS, LiveServer, run_async
from .seed import PATCH, seed_demo

pytest.importorskip("playwright")
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

XSS_ID = '<script>window.__xss="id"</script>'
XSS_AGENT = '"><img src=x onerror="window.__xss=\'agent\'">'
XSS_TAG = "javascript:window.__xss='tag'"
XSS_KEY = '"><img src=x onerror=window.__xss=1>.txt'


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    dialogs: list[str] = []
    pg.dialogs = dialogs  # type: ignore[attr-defined]

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[LiveServer]:
    db = tmp_path / "store.db"
    arts = tmp_path / "artifacts"
    url = f"sqlite:///{db}?auto_migrate=true"

    async def seed() -> None:
        async with open_session_store(url) as store, open_artifact_store(f"file://{arts}") as a:
            await seed_demo(store, a)

    run_async(seed)
    server = LiveServer(url, f"file://{arts}").start()
    server.db = db  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def _append_from_other_process(db: Path, code: str) -> None:
    """Run ``code`` (awaiting on ``store``) in a new Python process against the same file."""
    script = (
        "import asyncio\n"
        "from agent_session_store import Event, EventType, open_session_store\n"
        "async def main():\n"
        f"    async with open_session_store('sqlite:///{db}') as store:\n"
        + "".join(f"        {line}\n" for line in code.strip().splitlines())
        + "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_list_session_timeline_live_pairing(
    demo_server: LiveServer, page: Page, tmp_path: Path
) -> None:
    page.goto(demo_server.base + "/")
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    link = page.get_by_role("link", name="ses_demo")
    expect(link).to_be_visible()
    page.screenshot(path=str(tmp_path / "sessions.png"), full_page=True)
    link.click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("ses_demo")
    timeline = page.locator("#timeline")
    expect(timeline.locator("li").first).to_be_visible()
    assert timeline.locator("li").count() == 22  # 23 events, two streamed pieces in one row
    expect(page.locator("#e3 .bubble")).to_contain_text("Why does test_parse fail")
    expect(page.locator("#e4 .bubble")).to_contain_text("Let me read the parser and run the tests.")
    # The rewind at #12 (to #10) strikes #11 through; #10 stays.
    expect(page.locator("#e11")).to_have_class(re.compile(r"\brewound\b"))
    decoration = page.locator("#e11 .bubble .text").evaluate(
        "el => getComputedStyle(el).textDecorationLine"
    )
    assert decoration == "line-through"
    assert "rewound" not in (page.locator("#e10").get_attribute("class") or "")
    # Errors stand out (class and a visible word, not colour alone).
    expect(page.locator("#e21 .flag").first).to_have_text("error")
    # The chart is inline SVG with an accessible title.
    expect(page.locator("#chart-title")).to_contain_text("2 run(s)")
    page.screenshot(path=str(tmp_path / "session.png"), full_page=True)

    # Parallel calls: #7 run_tests is answered by #8, #6 read_file by #9.
    page.locator("#e6 a.result-link").click()
    assert page.evaluate("location.hash") == "#e9"
    assert page.locator("#e9").get_attribute("data-tool-call-id") == "call_read"
    page.locator("#e8 a.call-link").click()
    assert page.evaluate("location.hash") == "#e7"

    # Appended by another OS process: shown within 2 s, without reloading.
    page.evaluate("window.__same_document = true")
    expect(page.locator("#live-status")).to_have_text("live")
    _append_from_other_process(
        demo_server.db,  # type: ignore[attr-defined]
        """
await store.append_event(Event(type=EventType.TOOL_CALL_STARTED, session_id='ses_demo',
    data={'tool_name': 'lint', 'tool_call_id': 'call_live', 'tool_input': {}}))
await store.append_event(Event(type=EventType.MESSAGE_RECEIVED, session_id='ses_demo',
    data={'role': 'assistant', 'content': 'appended from elsewhere'}))
""",
    )
    appended = time.monotonic()
    expect(page.locator("#e25 .bubble")).to_contain_text("appended from elsewhere", timeout=2000)
    assert time.monotonic() - appended <= 2.0
    assert page.evaluate("window.__same_document") is True  # no reload happened
    expect(page.locator("#e24 .pending-note")).to_be_visible()
    _append_from_other_process(
        demo_server.db,  # type: ignore[attr-defined]
        """
await store.append_event(Event(type=EventType.TOOL_CALL_COMPLETED, session_id='ses_demo',
    data={'tool_name': 'lint', 'tool_call_id': 'call_live', 'tool_output': {'ok': True}}))
await store.append_event(Event(type=EventType.HISTORY_REWOUND, session_id='ses_demo',
    data={'to_sequence': 24}))
""",
    )
    result = page.locator("#e24 a.result-link")
    expect(result).to_have_text("result #26 ↓", timeout=2000)
    result.click()
    assert page.evaluate("location.hash") == "#e26"
    expect(page.locator("#e25")).to_have_class(re.compile(r"\brewound\b"), timeout=2000)
    assert page.evaluate("window.__same_document") is True
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert (tmp_path / "sessions.png").stat().st_size > 0
    assert (tmp_path / "session.png").stat().st_size > 0


def test_artifact_browser_preview_and_download(demo_server: LiveServer, page: Page) -> None:
    page.goto(demo_server.base + "/sessions/ses_demo")
    page.get_by_role("link", name="artifact sessions/ses_demo/fix.diff").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("fix.diff")
    expect(page.locator("pre.diff .add").first).to_contain_text("+    lines = text.splitlines()")
    expect(page.locator("pre.diff .del").first).to_contain_text("-    first")
    with page.expect_download() as info:
        page.locator("#download").click()
    download = info.value
    assert download.suggested_filename == "fix.diff"
    assert Path(download.path()).read_bytes() == PATCH.encode()
    page.goto(demo_server.base + "/artifacts?prefix=sessions/ses_demo/")
    expect(page.get_by_role("link", name="sessions/ses_demo/notes.txt")).to_be_visible()
    page.get_by_role("link", name="sessions/ses_demo/notes.txt").click()
    expect(page.locator("pre.text-preview")).to_contain_text("Empty input must parse to [].")


@pytest.fixture
def xss_server(tmp_path: Path) -> Iterator[LiveServer]:
    from agent_session_store import Event, EventType, Session

    db = tmp_path / "xss.db"
    arts = tmp_path / "artifacts"
    url = f"sqlite:///{db}?auto_migrate=true"

    async def seed() -> None:
        async with open_session_store(url) as store, open_artifact_store(f"file://{arts}") as a:
            await store.save_session(
                Session(
                    id=XSS_ID,
                    agent_id=XSS_AGENT,
                    tags=[XSS_TAG, "<b>bold</b>"],
                    metadata={"x": "</script><script>window.__xss='meta'</script>"},
                )
            )
            payloads: list[dict[str, Any]] = [
                {"role": "user", "content": "<script>window.__xss='content'</script>"},
                {
                    "role": '"><img src=x onerror=window.__xss="role">',
                    "content": "<img src=x onerror=alert(1)>",
                },
                {
                    "tool_name": "<svg onload=alert(2)>",
                    "tool_call_id": '"><script>alert(3)</script>',
                    "tool_input": {"url": "javascript:alert(4)"},
                },
                {
                    "tool_name": "t",
                    "tool_call_id": '"><script>alert(3)</script>',
                    "tool_output": "<iframe src=javascript:alert(5)>",
                },
                {"artifact_key": "javascript:alert(6)"},
                {"artifact_key": XSS_KEY},
            ]
            kinds = [
                EventType.MESSAGE_SENT,
                EventType.MESSAGE_RECEIVED,
                EventType.TOOL_CALL_STARTED,
                EventType.TOOL_CALL_COMPLETED,
                EventType.WORKSPACE_DIFF_COMPUTED,
                EventType.WORKSPACE_SNAPSHOT_TAKEN,
            ]
            await store.append_events(
                [
                    Event(type=k, session_id=XSS_ID, run_id="<script>alert(7)</script>", data=d)
                    for k, d in zip(kinds, payloads)
                ]
            )
            await a.put(XSS_KEY, b"<script>window.__xss='artifact'</script>")
            await a.put("javascript:alert(8)", b"<img src=x onerror=alert(9)>")

    run_async(seed)
    server = LiveServer(url, f"file://{arts}").start()
    server.db = db  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def _assert_inert(page: Page) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert page.locator("img, iframe, svg[onload]").count() == 0
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")]
    scripts = page.eval_on_selector_all("script", "els => els.map(e => e.getAttribute('src'))")
    assert all(s and s.endswith("/static/app.js") for s in scripts), scripts


def test_stored_values_never_execute(xss_server: LiveServer, page: Page) -> None:
    page.goto(xss_server.base + "/")
    _assert_inert(page)
    expect(page.locator("table.sessions")).to_contain_text(XSS_ID)  # shown as text
    expect(page.locator("table.sessions")).to_contain_text(XSS_TAG)
    page.locator("a.session-link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(XSS_ID)
    page.locator("#timeline details").first.locator("summary").click()
    _assert_inert(page)
    expect(page.locator("#timeline")).to_contain_text("<script>window.__xss='content'</script>")
    # Live rows go through the same escaping.
    _append_from_other_process(
        xss_server.db,  # type: ignore[attr-defined]
        f"""
await store.append_event(Event(type=EventType.MESSAGE_RECEIVED, session_id={XSS_ID!r},
    data={{'role': 'assistant', 'content': '<img src=x onerror=window.__xss=\\'live\\'>live'}}))
""",
    )
    expect(page.locator("#e7")).to_contain_text("<img src=x onerror", timeout=2000)
    _assert_inert(page)
    page.goto(xss_server.base + "/artifacts")
    _assert_inert(page)
    page.get_by_role("link", name=XSS_KEY).click()
    expect(page.locator("pre.text-preview")).to_contain_text(
        "<script>window.__xss='artifact'</script>"
    )
    _assert_inert(page)
    page.goto(xss_server.base + "/artifacts")
    page.get_by_role("link", name="javascript:alert(8)").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("javascript:alert(8)")
    _assert_inert(page)


def test_new_sessions_notice(page: Page) -> None:
    """The list polls for sessions created after it was rendered (needs the query API,
    which the memory store has)."""
    from agent_session_store import Session

    server = LiveServer("memory://").start()
    try:
        store = server.store
        assert store is not None
        server.call(lambda: store.save_session(Session(id="ses_old", agent_id="a")))
        page.goto(server.base + "/")
        expect(page.get_by_role("link", name="ses_old")).to_be_visible()
        notice = page.locator("#new-sessions")
        expect(notice).to_be_hidden()
        server.call(lambda: store.save_session(Session(id="ses_new", agent_id="a")))
        expect(notice).to_be_visible(timeout=8000)
        expect(notice.locator(".count")).to_have_text("1")
        notice.get_by_role("link").click()
        expect(page.get_by_role("link", name="ses_new")).to_be_visible()
    finally:
        server.stop()
