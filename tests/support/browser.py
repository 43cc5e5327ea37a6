"""The console in a real browser: the app served by uvicorn on a free loopback port, Debian's chromium
driven by Playwright, screenshots written to ``test-artifacts/screenshots/`` (named in the README).

    with live_console(world) as base, browser_page(viewport=PHONE) as page:
        login(page, base, "director-a")
        ...
        shot(page, "institution-phone")
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from playwright.sync_api import Page, ViewportSize, sync_playwright

from tests.servers import free_port, wait_port
from tests.support.world import PASSWORD, World

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP: ViewportSize = {"width": 1920, "height": 1080}  # a control-room screen
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}  # a phone held upright


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")


@contextmanager
def live_console(world: World) -> Iterator[str]:
    """Serves ``world.app`` over real HTTP (the browser needs a socket); yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(world.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def browser_page(viewport: ViewportSize | None = None, **context: Any) -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            ctx = browser.new_context(viewport=viewport or LAPTOP, locale="zh-CN", timezone_id="Asia/Shanghai",
                                      **context)
            page = ctx.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def login(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form[action='/login'] button")
    page.wait_for_url(lambda url: "/login" not in url)


def shot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """A screenshot for people to look at (not compared by the test)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
